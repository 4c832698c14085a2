import Hummingbird
import HTTPTypes
import Yams

/// The OpenAPI 3.1 description served at /openapi.yaml: the HTTP contract, which schemathesis
/// checks the live server against (`Tests/Contract/api_contract.py`).
public enum OpenAPI {
    /// The documented paths, as segments (nil: a `{parameter}`), with their methods: read from the
    /// document itself, so a method it does not list is a 405 with the `Allow` it does.
    static let operations: [(segments: [String?], methods: [String])] = {
        guard let root = (try? Yams.load(yaml: document)) as? [String: Any], let paths = root["paths"] as? [String: Any] else { return [] }
        let verbs = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
        return paths.compactMap { path, item in
            guard let item = item as? [String: Any] else { return nil }
            let segments: [String?] = path.split(separator: "/").map { $0.hasPrefix("{") && $0.hasSuffix("}") ? nil : String($0) }
            return (segments, verbs.filter { item[$0] != nil }.map { $0.uppercased() })
        }
    }()

    /// The methods the document lists for a request path; nil when it documents no such path.
    static func methods(for path: Substring) -> [String]? {
        let parts = path.split(separator: "/")
        let matches = operations.filter { op in
            op.segments.count == parts.count && zip(op.segments, parts).allSatisfy { template, part in template.map { $0 == part } ?? !part.isEmpty }
        }
        guard !matches.isEmpty else { return nil }
        // A literal segment beats a parameter (`/a/b` over `/a/{id}`), as in the router.
        let best = matches.max { a, b in a.segments.filter { $0 != nil }.count < b.segments.filter { $0 != nil }.count }
        return best?.methods
    }

    public static let document = #"""
openapi: 3.1.0
info:
  title: Waiver
  version: 0.1.0
  description: >-
    The shared register of policy exceptions. Every /api/v1 request needs `Authorization: Bearer <token>`
    (tokens come from `waiver admin add-user` / `add-token`); the actor of every change is the token's user.
    Errors are `{"error": {"code": "...", "message": "..."}}` with 400, 401, 403, 404, 409, 413, 422 or 429.
    Request bodies are checked against their schemas: an unknown field is a 422, never silently ignored.
    A method a path does not document is a 405 with `Allow`.
servers:
  - url: http://127.0.0.1:8080
security:
  - bearer: []
components:
  securitySchemes:
    bearer: { type: http, scheme: bearer, description: "a Waiver API token (wvr_…), or a pipeline's OIDC token from an issuer identity.pipelines trusts (GitHub Actions, GitLab CI, HCP Terraform)" }
    session: { type: apiKey, in: cookie, name: waiver_session }
  schemas:
    Error:
      type: object
      required: [error]
      properties:
        error:
          type: object
          required: [code, message]
          properties: { code: { type: string }, message: { type: string } }
    Approval:
      type: object
      required: [approver, comment, at]
      properties:
        approver: { type: string }
        comment: { type: [string, "null"] }
        at: { type: string, format: date-time }
    EvidenceItem:
      type: object
      required: [name, sha256, size, added_by, at]
      properties:
        name: { type: string }
        sha256: { type: string, pattern: "^[0-9a-f]{64}$" }
        size: { type: integer, minimum: 0 }
        added_by: { type: string }
        at: { type: string, format: date-time }
        display_text: { type: string, description: "what the file shows, in words" }
    Origin:
      type: object
      description: the change and pipeline run a request came from
      properties:
        commit: { type: string }
        run_url: { type: string, format: uri }
        change_url: { type: string, format: uri, description: the pull or merge request }
        commit_author: { type: string, description: declared by the client (unverified); may not approve }
        pipeline: { type: string, description: "the verified pipeline (OIDC), pipeline:owner/repo@ref" }
    HistoryEntry:
      type: object
      required: [seq, at, actor, action, details]
      properties:
        seq: { type: integer, minimum: 1 }
        at: { type: string, format: date-time }
        actor: { type: string }
        action: { type: string }
        details: { type: [object, string] }
    Exception:
      type: object
      required: [id, status, active, policy, category, workspace, subject_kind, resources, requester, reason, days, likelihood, impact,
                 risk, risk_note, conflicted, mitigations, approvers, approvals, evidence, created, decided, expires, renews]
      properties:
        id: { type: string, pattern: "^EX-[0-9]+$", example: EX-7 }
        status: { type: string, enum: [pending, approved, rejected, revoked, expired, closed] }
        active: { type: boolean }
        policy: { type: string }
        category: { type: string }
        workspace: { type: string }
        subject_kind: { type: string, enum: [resource, person, device, account] }
        resources: { type: array, items: { type: string } }
        requester: { type: string }
        reason: { type: string }
        ticket: { type: string, description: "the ticket reference or URL it was filed with" }
        origin: { $ref: "#/components/schemas/Origin" }
        bound:
          type: object
          additionalProperties: { type: string }
          description: "the violating values it was filed and approved for, by resource; a later check with other values is changed, not excepted"
        days: { type: integer, minimum: 1 }
        likelihood: { type: string, enum: [low, medium, high] }
        impact: { type: string, enum: [low, medium, high] }
        risk: { type: string }
        risk_proposed: { type: string, description: the risk as filed, when an approver raised it }
        risk_raised_by: { type: string }
        risk_note: { type: string }
        owner: { type: string }
        conflicted: { type: array, items: { type: string }, description: people who may not approve it }
        untrusted: { type: string, description: "present when the audit log does not back the stored state: the exception covers nothing" }
        mitigations: { type: array, items: { type: string } }
        approvers:
          type: object
          required: [groups, min_approvals, required_groups]
          properties:
            groups: { type: array, items: { type: string } }
            min_approvals: { type: integer, minimum: 1 }
            required_groups: { type: array, items: { type: string } }
        approvals: { type: array, items: { $ref: "#/components/schemas/Approval" } }
        evidence: { type: array, items: { $ref: "#/components/schemas/EvidenceItem" } }
        created: { type: string, format: date-time }
        decided: { type: [string, "null"], format: date-time }
        expires: { type: [string, "null"], format: date-time }
        renews: { type: [string, "null"], pattern: "^EX-[0-9]+$" }
        reviewed: { type: string, format: date-time, description: "a program exception's last review attestation" }
        history: { type: array, items: { $ref: "#/components/schemas/HistoryEntry" } }
        decisions:
          type: array
          description: "with the history: every approval, rejection, revocation, expiry and closing, with its comment or reason"
          items: { type: object, required: [decision, by, at], properties: { decision: { type: string, enum: [approval, approved, rejected, revoked, expired, closed] }, by: { type: string }, at: { type: string, format: date-time }, comment: { type: string } } }
        risk_history:
          type: array
          description: "with the history: the risk as filed, then each re-rating"
          items: { type: object, required: [level, by, at, how], properties: { level: { type: string }, by: { type: string }, at: { type: string, format: date-time }, how: { type: string } } }
        still_needs: { type: string, description: "on an approval that is not yet enough: what it still needs" }
        warning: { type: string, description: "on a request no one can approve as the groups stand" }
    Finding:
      type: object
      required: [policy, title, severity, category, resource, status, message]
      properties:
        policy: { type: string }
        title: { type: string }
        severity: { type: string, enum: [low, medium, high, critical] }
        category: { type: string }
        resource: { type: string }
        status: { type: string, enum: [blocking, excepted, pending, unknown, advisory, changed] }
        exception: { type: string }
        approved_values: { type: string, description: "changed results: the violating values the exception was approved for" }
        link: { type: string, description: "the exception's page, when the server has a --public-url" }
        expires: { type: string, format: date-time }
        message: { type: string }
        remediation: { type: string }
        source: { type: object }
    CheckResult:
      type: object
      required: [verdict, workspace, summary, results, evaluation, requested]
      properties:
        verdict: { type: string, enum: [pass, blocked] }
        workspace: { type: string }
        summary:
          type: object
          required: [resources, violations, blocking, excepted, pending, unknown]
          properties:
            resources: { type: integer, minimum: 0 }
            violations: { type: integer, minimum: 0 }
            blocking: { type: integer, minimum: 0 }
            excepted: { type: integer, minimum: 0 }
            pending: { type: integer, minimum: 0 }
            unknown: { type: integer, minimum: 0 }
            advisory: { type: integer, minimum: 0, description: "violations of advisory policies (or below fail_on): reported, never blocking" }
            changed: { type: integer, minimum: 0, description: "violations under an exception approved for other values: blocking" }
        results: { type: array, items: { $ref: "#/components/schemas/Finding" } }
        evaluation: { type: integer, minimum: 1 }
        requested: { type: array, items: { type: string, pattern: "^EX-[0-9]+$" } }
        request_warnings: { type: array, items: { type: string } }
        warnings: { type: array, items: { type: string } }
        rendered: { type: string, description: present when a format other than json was asked for }
        renderings:
          type: object
          description: "with `formats`: each format other than json asked for, rendered"
          additionalProperties: false
          properties:
            text: { type: string }
            sarif: { type: string }
            junit: { type: string }
            markdown: { type: string }
            codequality: { type: string }
    ExceptionRequest:
      type: object
      additionalProperties: false
      required: [reason]
      properties:
        policy: { type: string, maxLength: 200, description: "required, except on a renewal (then the renewed exception's)" }
        workspace: { type: string, maxLength: 200, description: "required for a resource exception; a program exception's defaults to program, a renewal's to the renewed exception's" }
        kind: { type: string, enum: [resource, person, device, account], description: "resource, or on a renewal the renewed exception's" }
        resources: { type: array, items: { type: string, minLength: 1, maxLength: 2000 }, maxItems: 10000, description: "on a renewal, the renewed exception's when empty" }
        reason: { type: string, minLength: 1, maxLength: 10000 }
        days: { type: integer, minimum: 1, maximum: 100000, description: capped per policy }
        likelihood: { type: string, enum: [low, medium, high] }
        impact: { type: string, enum: [low, medium, high] }
        mitigations: { type: array, items: { type: string, maxLength: 2000 }, maxItems: 100 }
        renews: { type: string, pattern: "^([Ee][Xx]-)?[0-9]{1,18}$" }
        ticket: { type: string, maxLength: 500, description: "a ticket reference (INC-42) or an http(s) URL; a renewal's default is the renewed exception's" }
        owner: { type: string, maxLength: 200, description: "the owner of a device or account (required for those kinds); they may not approve it" }
        scanner_rule: { type: boolean, description: "the policy is a scanner's rule no policy file defines (a suppression brought under governance): routed as a medium-severity security rule" }
    Comment:
      type: object
      additionalProperties: false
      required: [comment]
      properties: { comment: { type: string, minLength: 1, maxLength: 2000 } }
    Policy:
      type: object
      required: [id, title, category, severity, description, remediation, resource_types, kind, max_days, source]
      properties:
        id: { type: string }
        title: { type: string }
        category: { type: string }
        severity: { type: string, enum: [low, medium, high, critical] }
        description: { type: string }
        remediation: { type: string }
        resource_types: { type: [array, "null"], items: { type: string } }
        kind: { type: string, enum: [forbid, require, sarif, control] }
        max_days: { type: integer, minimum: 1 }
        source: { type: [string, "null"] }
    AuditEvent:
      type: object
      required: [seq, time, time_iso, actor, action, subject, payload, prev_hash, hash]
      properties:
        seq: { type: integer, minimum: 1 }
        time: { type: integer, description: seconds since 1970 }
        time_iso: { type: string, format: date-time }
        actor: { type: string }
        action: { type: string }
        subject: { type: string }
        payload: { type: string, description: "the event's JSON, as hashed" }
        prev_hash: { type: string, pattern: "^[0-9a-f]{64}$" }
        hash: { type: string, pattern: "^[0-9a-f]{64}$" }
    Checkpoint:
      type: object
      required: [seq, hash, time, time_iso, key_id, signature]
      properties:
        seq: { type: integer, minimum: 1 }
        hash: { type: string }
        time: { type: integer }
        time_iso: { type: string, format: date-time }
        key_id: { type: string }
        signature: { type: string }
  responses:
    Error:
      description: an error
      content: { application/json: { schema: { $ref: "#/components/schemas/Error" } } }
    Exception:
      description: the exception
      content: { application/json: { schema: { $ref: "#/components/schemas/Exception" } } }
    Page:
      description: an HTML page
      content: { text/html: { schema: { type: string } } }
    ToSignIn:
      description: "no session: to /login"
      headers: { Location: { schema: { type: string } } }
  parameters:
    id: { name: id, in: path, required: true, schema: { type: string, pattern: "^([Ee][Xx]-)?[0-9]{1,18}$" }, example: EX-7 }
    sha256: { name: sha256, in: path, required: true, schema: { type: string, pattern: "^[0-9a-f]{64}$" } }
    limit: { name: limit, in: query, schema: { type: integer, minimum: 0 } }
paths:
  /:
    get: { summary: "Web: redirects to the inbox", tags: [web], security: [], responses: { "303": { description: redirect } } }
  /login:
    get: { summary: "Web: sign-in form", tags: [web], security: [], responses: { "200": { $ref: "#/components/responses/Page" } } }
    post:
      summary: "Web: sign in with an API token (form: token, csrf); sets the session cookie"
      tags: [web]
      security: []
      requestBody: { content: { application/x-www-form-urlencoded: { schema: { type: object, properties: { token: { type: string }, csrf: { type: string } } } } } }
      responses: { "303": { description: to the inbox }, "400": { $ref: "#/components/responses/Page" }, "401": { $ref: "#/components/responses/Page" },
                   "403": { $ref: "#/components/responses/Page" }, "413": { $ref: "#/components/responses/Page" }, "429": { $ref: "#/components/responses/Page" } }
  /login/oidc:
    get:
      summary: "Web: single sign-on: to the OpenID provider (authorization code with PKCE, state and nonce)"
      tags: [web]
      security: []
      responses: { "303": { description: to the provider's authorization endpoint }, "404": { $ref: "#/components/responses/Page" },
                   "502": { $ref: "#/components/responses/Page" } }
  /login/oidc/callback:
    get:
      summary: "Web: single sign-on: back from the provider; redeems the code, verifies the ID token, opens a session"
      tags: [web]
      security: []
      parameters:
        - { name: code, in: query, schema: { type: string } }
        - { name: state, in: query, schema: { type: string } }
        - { name: error, in: query, schema: { type: string } }
      responses: { "200": { $ref: "#/components/responses/Page" }, "400": { $ref: "#/components/responses/Page" }, "401": { $ref: "#/components/responses/Page" },
                   "403": { $ref: "#/components/responses/Page" }, "404": { $ref: "#/components/responses/Page" }, "429": { $ref: "#/components/responses/Page" },
                   "502": { $ref: "#/components/responses/Page" } }
  /logout:
    post:
      summary: "Web: sign out (form: csrf)"
      tags: [web]
      security: [{ session: [] }]
      requestBody: { content: { application/x-www-form-urlencoded: { schema: { type: object, properties: { csrf: { type: string } } } } } }
      responses: { "303": { description: to sign-in }, "400": { $ref: "#/components/responses/Page" }, "403": { $ref: "#/components/responses/Page" }, "413": { $ref: "#/components/responses/Page" } }
  /inbox:
    get: { summary: "Web: requests waiting for this user", tags: [web], security: [{ session: [] }], responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" } } }
  /exceptions/{id}:
    get:
      summary: "Web: one exception"
      tags: [web]
      security: [{ session: [] }]
      parameters: [{ $ref: "#/components/parameters/id" }]
      responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" }, "400": { $ref: "#/components/responses/Page" }, "404": { $ref: "#/components/responses/Page" } }
  /exceptions/{id}/decide:
    post:
      summary: "Web: approve, reject, revoke, attest a review or close as remediated (form: action, comment, csrf)"
      tags: [web]
      security: [{ session: [] }]
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { content: { application/x-www-form-urlencoded: { schema: { type: object, properties: { action: { type: string, enum: [approve, reject, revoke, attest, close] }, comment: { type: string }, csrf: { type: string } } } } } }
      responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" }, "400": { $ref: "#/components/responses/Page" },
                   "403": { $ref: "#/components/responses/Page" }, "404": { $ref: "#/components/responses/Page" }, "409": { $ref: "#/components/responses/Page" },
                   "413": { $ref: "#/components/responses/Page" }, "422": { $ref: "#/components/responses/Page" } }
  /exceptions/{id}/amend:
    post:
      summary: "Web: request an amended exception for the values the latest check saw changed (form: reason, csrf); redirects to the new request"
      tags: [web]
      security: [{ session: [] }]
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { content: { application/x-www-form-urlencoded: { schema: { type: object, properties: { reason: { type: string }, csrf: { type: string } } } } } }
      responses: { "303": { description: the new request's page, or sign-in }, "400": { $ref: "#/components/responses/Page" },
                   "403": { $ref: "#/components/responses/Page" }, "404": { $ref: "#/components/responses/Page" }, "409": { $ref: "#/components/responses/Page" },
                   "413": { $ref: "#/components/responses/Page" }, "422": { $ref: "#/components/responses/Page" } }
  /exceptions/{id}/evidence:
    post:
      summary: "Web: add evidence with its display text (multipart form: file, display_text, csrf)"
      tags: [web]
      security: [{ session: [] }]
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { content: { multipart/form-data: { schema: { type: object, properties: { file: { type: string, format: binary }, display_text: { type: string, maxLength: 2000 }, csrf: { type: string } } } } } }
      responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" }, "400": { $ref: "#/components/responses/Page" },
                   "403": { $ref: "#/components/responses/Page" }, "404": { $ref: "#/components/responses/Page" }, "409": { $ref: "#/components/responses/Page" },
                   "413": { $ref: "#/components/responses/Page" }, "422": { $ref: "#/components/responses/Page" } }
  /inbox/decide:
    post:
      summary: "Web: decide several requests together, each on its own (form: action, comment, pick_N=on for EX-N, csrf)"
      tags: [web]
      security: [{ session: [] }]
      requestBody: { content: { application/x-www-form-urlencoded: { schema: { type: object, properties: { action: { type: string, enum: [approve, reject] }, comment: { type: string }, csrf: { type: string } } } } } }
      responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" }, "400": { $ref: "#/components/responses/Page" },
                   "403": { $ref: "#/components/responses/Page" }, "413": { $ref: "#/components/responses/Page" } }
  /audit/package:
    get:
      summary: "Web: the audit package of a period (ZIP): register and audit log exports, evidence, verification, summary"
      tags: [web]
      security: [{ session: [] }]
      parameters: [{ name: from, in: query, required: true, schema: { type: string } }, { name: to, in: query, required: true, schema: { type: string } }]
      responses: { "200": { description: the package, content: { application/zip: { schema: { type: string, format: binary } } } }, "303": { $ref: "#/components/responses/ToSignIn" },
                   "400": { $ref: "#/components/responses/Page" }, "422": { $ref: "#/components/responses/Page" } }
  /controls:
    get: { summary: "Web: exceptions grouped by the framework controls their policies implement", tags: [web], security: [{ session: [] }], responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" } } }
  /mine:
    get: { summary: "Web: my requests (pending, active with days left, decided with the decision's comment)", tags: [web], security: [{ session: [] }], responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" } } }
  /evidence/{sha256}:
    get:
      summary: "Web: download evidence"
      tags: [web]
      security: [{ session: [] }]
      parameters: [{ $ref: "#/components/parameters/sha256" }]
      responses: { "200": { description: the file, content: { application/octet-stream: { schema: { type: string, format: binary } } } }, "303": { $ref: "#/components/responses/ToSignIn" },
                   "400": { $ref: "#/components/responses/Page" }, "404": { $ref: "#/components/responses/Page" } }
  /register:
    get:
      summary: "Web: the register with filters (status, policy, workspace, expiring_within, ticket, control), newest first in pages (page, per_page)"
      tags: [web]
      security: [{ session: [] }]
      parameters:
        - { name: status, in: query, schema: { type: string, enum: [pending, approved, rejected, revoked, expired, closed] } }
        - { name: policy, in: query, schema: { type: string } }
        - { name: workspace, in: query, schema: { type: string } }
        - { name: expiring_within, in: query, schema: { type: string, pattern: "^[0-9]{1,8}[smhdw]$" } }
        - { name: page, in: query, schema: { type: integer, minimum: 1 } }
        - { name: per_page, in: query, schema: { type: integer, minimum: 1, maximum: 500 } }
      responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" }, "400": { $ref: "#/components/responses/Page" } }
  /register.csv:
    get:
      summary: "Web: the filtered register as CSV"
      tags: [web]
      security: [{ session: [] }]
      parameters:
        - { name: status, in: query, schema: { type: string, enum: [pending, approved, rejected, revoked, expired, closed] } }
        - { name: policy, in: query, schema: { type: string } }
        - { name: workspace, in: query, schema: { type: string } }
        - { name: expiring_within, in: query, schema: { type: string, pattern: "^[0-9]{1,8}[smhdw]$" } }
      responses: { "200": { description: CSV, content: { text/csv: { schema: { type: string } } } }, "303": { $ref: "#/components/responses/ToSignIn" }, "400": { $ref: "#/components/responses/Page" } }
  /policies/{id}:
    get:
      summary: "Web: a policy with its exceptions per quarter (the four ending with ?quarter=2026-Q2, default the running one)"
      tags: [web]
      security: [{ session: [] }]
      parameters: [{ name: id, in: path, required: true, schema: { type: string } }, { name: quarter, in: query, schema: { type: string, pattern: "^[0-9]{4}-[Qq][1-4]$" } }]
      responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" }, "400": { $ref: "#/components/responses/Page" }, "404": { $ref: "#/components/responses/Page" } }
  /review:
    get:
      summary: "Web: quarterly review of a quarter (?quarter=2026-Q2, default the running one)"
      tags: [web]
      security: [{ session: [] }]
      parameters: [{ name: quarter, in: query, schema: { type: string, pattern: "^[0-9]{4}-[Qq][1-4]$" } }]
      responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" }, "400": { $ref: "#/components/responses/Page" } }
  /audit:
    get: { summary: "Web: audit chain status", tags: [web], security: [{ session: [] }], responses: { "200": { $ref: "#/components/responses/Page" }, "303": { $ref: "#/components/responses/ToSignIn" } } }
  /audit/export.jsonl:
    get: { summary: "Web: audit export download", tags: [web], security: [{ session: [] }], responses: { "200": { description: JSON Lines, content: { application/jsonl: { schema: { type: string } } } }, "303": { $ref: "#/components/responses/ToSignIn" } } }
  /health:
    get:
      summary: Liveness
      security: []
      responses: { "200": { description: ok, content: { application/json: { schema: { type: object, required: [status], properties: { status: { const: ok } } } } } } }
  /metrics:
    get: { summary: "Prometheus metrics (a token, unless waiver.yaml says server: { metrics: open })", responses: { "200": { description: text exposition format, content: { text/plain: { schema: { type: string } } } }, "401": { $ref: "#/components/responses/Error" }, "429": { $ref: "#/components/responses/Error" } } }
  /openapi.yaml:
    get: { summary: This document, security: [], responses: { "200": { description: OpenAPI 3.1, content: { application/yaml: { schema: { type: string } } } } } }
  /api/v1/me:
    get:
      summary: The token's user
      responses:
        "200":
          description: user
          content: { application/json: { schema: { type: object, required: [name, groups, admin], properties: { name: { type: string }, groups: { type: array, items: { type: string } }, admin: { type: boolean } } } } }
        "401": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/run-tasks/terraform:
    post:
      summary: "HCP Terraform / Terraform Enterprise run task (HashiCorp's run task integration protocol): answers at once, then fetches the plan, checks it and PATCHes the callback URL"
      description: "Only when `run_tasks.terraform` is configured (404 otherwise). Authenticated by the X-TFC-Task-Signature header (hex HMAC-SHA512 of the body with the run task's key), not by a token."
      security: []
      parameters:
        - { name: X-TFC-Task-Signature, in: header, required: true, schema: { type: string } }
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [payload_version, access_token, stage, task_result_callback_url, organization_name, workspace_name, run_id]
              properties:
                payload_version: { const: 1 }
                access_token: { type: string }
                stage: { type: string }
                task_result_callback_url: { type: string }
                plan_json_api_url: { type: string }
                organization_name: { type: string }
                workspace_name: { type: string }
                run_id: { type: string }
                run_created_by: { type: string }
      responses:
        "200": { description: "accepted (the result follows at the callback URL), or the verification request answered", content: { application/json: { schema: { type: object, required: [status], properties: { status: { enum: [ok, accepted] } } } } } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "404": { description: no run task is configured on this server }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "503": { $ref: "#/components/responses/Error" }
  /api/v1/evaluations:
    post:
      summary: Evaluate a plan and/or SARIF reports with the server's policies, against the register; recorded
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [workspace]
              properties:
                workspace: { type: string, minLength: 1, maxLength: 200 }
                plan: { type: object, description: "`terraform show -json` output" }
                sarif: { type: array, items: { type: object } }
                unknown: { type: string, enum: [warn, block] }
                format: { type: string, enum: [json, text, sarif, junit, markdown, codequality] }
                formats: { type: array, minItems: 1, maxItems: 12, items: { type: string, enum: [json, text, sarif, junit, markdown, codequality] }, description: "several reports from one check, each in `renderings`" }
                commit_author: { type: string, maxLength: 200, description: may not approve the requests filed for this change }
                fail_on: { type: string, enum: [low, medium, high, critical], description: "violations below this severity are advisory for this check" }
                commit: { type: string, maxLength: 200, description: the commit checked (shown to approvers) }
                run_url: { type: string, maxLength: 2000, description: the pipeline run (shown to approvers) }
                change_url: { type: string, maxLength: 2000, description: the pull or merge request (shown to approvers) }
                plan_file: { type: string, minLength: 1, maxLength: 1000, description: "how the report names the plan (default plan.json)" }
                sarif_files: { type: array, items: { type: string, minLength: 1, maxLength: 1000 }, description: "how the report names each SARIF report, one per report (default report-N.sarif)" }
                request:
                  type: object
                  additionalProperties: false
                  required: [reason]
                  description: "file a request per blocking violation"
                  properties:
                    reason: { type: string, minLength: 1, maxLength: 10000 }
                    days: { type: integer, minimum: 1, maximum: 100000 }
                    likelihood: { type: string, enum: [low, medium, high] }
                    impact: { type: string, enum: [low, medium, high] }
                    mitigations: { type: array, items: { type: string, maxLength: 2000 }, maxItems: 100 }
                    ticket: { type: string, maxLength: 500, description: "a ticket reference (INC-42) or an http(s) URL" }
                    renews: { type: string, pattern: "^([Ee][Xx]-)?[0-9]{1,18}$", description: "the exception the requests renew: each request for its policy and resources renews it" }
      responses:
        "201": { description: the check, content: { application/json: { schema: { $ref: "#/components/schemas/CheckResult" } } } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions:
    get:
      summary: List exceptions
      parameters:
        - { name: status, in: query, schema: { type: string, enum: [pending, approved, rejected, revoked, expired, closed] } }
        - { name: policy, in: query, schema: { type: string } }
        - { name: workspace, in: query, schema: { type: string } }
        - { name: requester, in: query, schema: { type: string } }
        - { name: mine, in: query, schema: { type: boolean }, description: "only the signed-in user's own requests" }
        - { name: ticket, in: query, schema: { type: string }, description: only exceptions filed with this ticket }
        - { name: history, in: query, schema: { type: boolean }, description: "each with its history, decisions and risk history (the JSON export)" }
        - { name: expiring_within, in: query, schema: { type: string, pattern: "^[0-9]{1,8}[smhdw]$" }, example: 7d }
        - { $ref: "#/components/parameters/limit" }
        - { name: format, in: query, schema: { type: string, enum: [json, text, csv] } }
      responses:
        "200":
          description: exceptions
          content:
            application/json: { schema: { type: array, items: { $ref: "#/components/schemas/Exception" } } }
            text/plain: { schema: { type: string } }
            text/csv: { schema: { type: string } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
    post:
      summary: Request an exception
      requestBody: { required: true, content: { application/json: { schema: { $ref: "#/components/schemas/ExceptionRequest" } } } }
      responses:
        "201": { $ref: "#/components/responses/Exception" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/batch:
    post:
      summary: Request several exceptions, all or none (waiver suppressions scan --request)
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [requests]
              properties:
                requests: { type: array, minItems: 1, maxItems: 1000, items: { $ref: "#/components/schemas/ExceptionRequest" } }
      responses:
        "201":
          description: the requests filed
          content:
            application/json:
              schema: { type: object, required: [requested], properties: { requested: { type: array, items: { $ref: "#/components/schemas/Exception" } } } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "403": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "409": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/{id}:
    get:
      summary: One exception with its history
      parameters: [{ $ref: "#/components/parameters/id" }, { name: format, in: query, schema: { type: string, enum: [json, text] } }]
      responses:
        "200":
          description: the exception
          content:
            application/json: { schema: { $ref: "#/components/schemas/Exception" } }
            text/plain: { schema: { type: string } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/{id}/approve:
    post:
      summary: Approve (never your own request, only from the routed groups)
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody:
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              properties:
                comment: { type: string, maxLength: 2000 }
                days: { type: integer, minimum: 1, maximum: 100000, description: shorten the requested duration }
                risk: { type: string, maxLength: 200, description: "re-rate the risk upward to this level of risk.levels" }
      responses:
        "200": { $ref: "#/components/responses/Exception" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "403": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "409": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/{id}/reject:
    post:
      summary: Reject, with a comment
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { required: true, content: { application/json: { schema: { $ref: "#/components/schemas/Comment" } } } }
      responses:
        "200": { $ref: "#/components/responses/Exception" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "403": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "409": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/{id}/revoke:
    post:
      summary: Revoke early, with a comment
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { required: true, content: { application/json: { schema: { $ref: "#/components/schemas/Comment" } } } }
      responses:
        "200": { $ref: "#/components/responses/Exception" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "403": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "409": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/{id}/attest:
    post:
      summary: "A review's re-attestation of a program exception under exceptions.review_every (still needed, mitigations in place)"
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { required: true, content: { application/json: { schema: { $ref: "#/components/schemas/Comment" } } } }
      responses:
        "200": { $ref: "#/components/responses/Exception" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "403": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "409": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/{id}/close:
    post:
      summary: "Close an active exception as remediated (closed), with the evidence added for it"
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { required: true, content: { application/json: { schema: { $ref: "#/components/schemas/Comment" } } } }
      responses:
        "200": { $ref: "#/components/responses/Exception" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "403": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "409": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/{id}/renew:
    post:
      summary: Request a renewal (a new request that references this one)
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { required: true, content: { application/json: { schema: { $ref: "#/components/schemas/ExceptionRequest" } } } }
      responses:
        "201": { $ref: "#/components/responses/Exception" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/reviews:
    post:
      summary: Record a policy's quarterly review (its approvers or an administrator)
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [quarter, policy, decision]
              properties:
                quarter: { type: string, pattern: "^[0-9]{4}-[Qq][1-4]$" }
                policy: { type: string, maxLength: 200 }
                decision: { type: string, minLength: 1, maxLength: 2000 }
                link: { type: string, maxLength: 2000, description: "the change that carries the decision out (http(s))" }
      responses:
        "201":
          description: the review
          content:
            application/json:
              schema: { type: object, required: [quarter, policy, decision, by, at], properties: { quarter: { type: string }, policy: { type: string }, decision: { type: string }, link: { type: string }, by: { type: string }, at: { type: string, format: date-time } } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "403": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions/{id}/evidence:
    post:
      summary: Upload an evidence file (kept by its SHA-256)
      parameters: [{ $ref: "#/components/parameters/id" }, { name: name, in: query, schema: { type: string, minLength: 1, maxLength: 255, pattern: "^[^/]+$" } },
                   { name: display_text, in: query, schema: { type: string, maxLength: 2000 }, description: "what the file shows, in words" }]
      requestBody: { required: true, content: { application/octet-stream: { schema: { type: string, format: binary } } } }
      responses:
        "201": { $ref: "#/components/responses/Exception" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "409": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/evidence/{sha256}:
    get:
      summary: Download an evidence file
      parameters: [{ $ref: "#/components/parameters/sha256" }]
      responses:
        "200": { description: the file, content: { application/octet-stream: { schema: { type: string, format: binary } } } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/policies:
    get:
      summary: The server's policies
      responses:
        "200": { description: policies, content: { application/json: { schema: { type: array, items: { $ref: "#/components/schemas/Policy" } } } } }
        "401": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/policies/{id}:
    get:
      summary: One policy
      parameters: [{ name: id, in: path, required: true, schema: { type: string }, example: NET-001 }]
      responses:
        "200": { description: policy, content: { application/json: { schema: { $ref: "#/components/schemas/Policy" } } } }
        "401": { $ref: "#/components/responses/Error" }
        "404": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/reports:
    get:
      summary: Exception frequency, renewals, policies to review, orphaned exceptions
      parameters:
        - { name: from, in: query, schema: { type: string, format: date }, example: "2026-10-01" }
        - { name: to, in: query, schema: { type: string, format: date }, example: "2026-12-31" }
        - { name: format, in: query, schema: { type: string, enum: [json, text, markdown] } }
      responses:
        "200":
          description: report
          content:
            application/json: { schema: { type: object } }
            text/plain: { schema: { type: string } }
            text/markdown: { schema: { type: string } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "422": { description: "the period ends before it starts", content: { application/json: { schema: { $ref: "#/components/schemas/Error" } } } }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/audit/events:
    get:
      summary: Audit events (optionally about one subject)
      parameters: [{ name: subject, in: query, schema: { type: string } }, { $ref: "#/components/parameters/limit" }]
      responses:
        "200": { description: events, content: { application/json: { schema: { type: array, items: { $ref: "#/components/schemas/AuditEvent" } } } } }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/audit/verify:
    get:
      summary: "Verify the register as evidence: the chain over every row, anchors, signed checkpoints, stored states against the log, evidence bytes"
      parameters:
        - { name: anchor, in: query, required: false, schema: { type: string, pattern: "^[0-9]+:[0-9a-fA-F]{64}$" },
            description: "SEQ:HASH of an event noted earlier (repeatable): shows events changed or cut from the end since" }
        - { name: public_key, in: query, required: false, schema: { type: string },
            description: "ed25519:BASE64 of the checkpoint signer: the chain is verified against the register's signed checkpoints" }
        - { name: full, in: query, required: false, schema: { type: boolean },
            description: "true: verify the whole chain; by default only the events after the head this server last verified, while that head still hashes as it did (anchors and public_key always verify the whole chain)" }
      responses:
        "200":
          description: "the verification"
          content:
            application/json:
              schema:
                type: object
                required: [intact, events]
                properties:
                  intact: { type: boolean }
                  events: { type: integer, minimum: 0 }
                  first_bad: { type: [integer, "null"] }
                  problem: { type: [string, "null"] }
                  head: { type: [string, "null"], description: SEQ:HASH of the last verified event }
                  findings: { type: array, items: { type: string }, description: exceptions and evidence the log does not back }
                  checkpoints: { type: integer, minimum: 0, description: signed checkpoints verified }
                  resumed_after: { type: integer, minimum: 1, description: "set when only the events after this one were verified: the chain up to it verified before, and it still hashes as it did then" }
        "400": { $ref: "#/components/responses/Error" }
        "401": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/audit/checkpoints:
    get:
      summary: "Signed checkpoints of the log's head, with the server's public key"
      responses:
        "200":
          description: "the public key and the checkpoints"
          content: { application/json: { schema: { type: object, required: [public_key, checkpoints], properties: { public_key: { type: [string, "null"] }, checkpoints: { type: array, items: { $ref: "#/components/schemas/Checkpoint" } } } } } }
        "401": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
    post:
      summary: Sign the log's head now with the server's Ed25519 key
      responses:
        "201": { description: the checkpoint, content: { application/json: { schema: { $ref: "#/components/schemas/Checkpoint" } } } }
        "401": { $ref: "#/components/responses/Error" }
        "409": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/audit/export:
    get:
      summary: The audit log as JSON Lines
      responses:
        "200": { description: one event a line, content: { application/jsonl: { schema: { type: string } } } }
        "401": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/expire:
    post:
      summary: "Re-check exceptions past expiry now (the scheduler also does it)"
      responses:
        "200":
          description: outcomes
          content:
            application/json:
              schema:
                type: array
                items:
                  type: object
                  required: [id, status, policy, workspace, still_violating, exception]
                  properties:
                    id: { type: string }
                    status: { type: string, enum: [expired, closed] }
                    policy: { type: string }
                    workspace: { type: string }
                    still_violating: { type: array, items: { type: string } }
                    exception: { $ref: "#/components/schemas/Exception" }
        "401": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
  /api/v1/admin/webhooks:
    get:
      summary: Webhook deliveries (administrators)
      responses:
        "200":
          description: deliveries
          content:
            application/json:
              schema:
                type: array
                items:
                  type: object
                  required: [id, url, event, attempts, delivered, next_attempt, last_error]
                  properties:
                    id: { type: integer }
                    url: { type: string }
                    event: { type: string }
                    attempts: { type: integer, minimum: 0 }
                    delivered: { type: [string, "null"], format: date-time }
                    next_attempt: { type: string, format: date-time }
                    last_error: { type: [string, "null"] }
        "401": { $ref: "#/components/responses/Error" }
        "403": { $ref: "#/components/responses/Error" }
        "429": { $ref: "#/components/responses/Error" }
"""#
}

/// A method the contract does not list on a documented path is `405 Method Not Allowed` with `Allow`
/// from the document; an undocumented path stays a 404.
struct MethodNotAllowedMiddleware: RouterMiddleware {
    typealias Context = WaiverContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as HTTPError where e.status == .notFound {
            guard let methods = OpenAPI.methods(for: Substring(request.uri.path)), !methods.contains(request.method.rawValue) else { throw e }
            var r = try APIError(.methodNotAllowed, "method_not_allowed", "\(request.method.rawValue) is not allowed here (allowed: \(methods.joined(separator: ", ")))")
                .response(from: request, context: context)
            r.headers[.allow] = methods.joined(separator: ", ")
            return r
        }
    }
}
