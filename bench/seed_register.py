#!/usr/bin/env python3
"""Fills a Waiver register (created by `waiver list`) with N exceptions and/or M audit events, for
the register benchmarks. Rows are written straight into SQLite with the same canonical encoding and
SHA-256 chain as Waiver, so `waiver audit verify` must accept the result.

usage: seed_register.py REGISTER.sqlite --exceptions N --workspace W --plan PLAN.json [--events M]
"""
import argparse, hashlib, json, random, sqlite3, sys, time

def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("register")
    ap.add_argument("--exceptions", type=int, default=0)
    ap.add_argument("--events", type=int, default=0, help="total audit events to reach (padding with check events)")
    ap.add_argument("--workspace", default="bench")
    ap.add_argument("--plan", help="plan whose resource addresses some exceptions should cover")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    db = sqlite3.connect(a.register)
    db.execute("PRAGMA journal_mode=WAL")
    cur = db.cursor()
    row = cur.execute("SELECT seq, hash FROM auditEvent ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (row[0], row[1]) if row else (0, "0" * 64)
    now = int(time.time())

    def event(actor, action, subject, payload, t):
        nonlocal seq, prev
        seq += 1
        p = canonical(payload)
        h = hashlib.sha256(json.dumps([seq, t, actor, action, subject, p, prev], separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
        cur.execute("INSERT INTO auditEvent (seq, time, actor, action, subject, payload, prevHash, hash) VALUES (?,?,?,?,?,?,?,?)",
                    (seq, t, actor, action, subject, p, prev, h))
        prev = h

    addresses = []
    if a.plan:
        with open(a.plan) as f:
            plan = json.load(f)
        addresses = [(rc["type"], rc["address"]) for rc in plan.get("resource_changes", []) if rc.get("mode") == "managed"]
    policies = ["COST-001", "COST-002", "NET-001", "NAME-001", "TAG-001", "TAG-002", "S3-001", "DB-002", "IAM-001", "STOR-001"]
    t0 = time.time()
    cur.execute("BEGIN")
    for i in range(a.exceptions):
        policy = rnd.choice(policies)
        if addresses and rnd.random() < 0.05:
            resource = rnd.choice(addresses)[1]   # covers something in the plan
        else:
            resource = "module.legacy_%d.aws_instance.node[%d]" % (i % 997, i)
        status = rnd.choice(["approved", "approved", "approved", "pending", "expired", "closed", "rejected"])
        created = now - rnd.randint(0, 90 * 86400)
        expires = now + rnd.randint(86400, 30 * 86400) if status == "approved" else (created + 14 * 86400 if status in ("expired", "closed") else None)
        decided = created + 3600 if status != "pending" else None
        cur.execute("""INSERT INTO exception (policy, category, workspace, subjectKind, requester, conflicted, reason, requestedDays,
            likelihood, impact, riskLevel, mitigations, approverGroups, minApprovals, requiredGroups, status, createdAt, decidedAt, expiresAt, renews)
            VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)""",
            (policy, "security", a.workspace, "resource", "dev%d@example.com" % (i % 50), "[]", "bench exception %d" % i, 14,
             "low", "medium", "low", "[]", '["security"]', 1, "[]", status, created, decided, expires))
        eid = cur.lastrowid
        cur.execute("INSERT INTO exceptionResource (exceptionId, workspace, policy, resource, position) VALUES (?,?,?,?,0)",
                    (eid, a.workspace, policy, resource))
        if status != "pending":
            cur.execute("INSERT INTO approval (exceptionId, approver, comment, at) VALUES (?,?,?,?)", (eid, "sam", None, decided))
        event("dev%d@example.com" % (i % 50), "exception.requested", "EX-%d" % eid,
              {"policy": policy, "workspace": a.workspace, "resources": [resource], "reason": "bench exception %d" % i}, created)
    while seq < a.events:
        event("ci", "check.recorded", "workspace:" + a.workspace,
              {"workspace": a.workspace, "verdict": "blocked", "resources": 100, "violations": 3, "blocking": 3,
               "excepted": 0, "pending": 0, "unknown": 0, "evaluation": seq}, now - (a.events - seq))
        if seq % 100000 == 0:
            db.commit(); cur.execute("BEGIN")
    db.commit()
    print("seeded %d exceptions, audit log now %d events (%.1f s)" % (a.exceptions, seq, time.time() - t0), file=sys.stderr)

main()
