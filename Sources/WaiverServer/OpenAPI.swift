/// The OpenAPI 3.1 description served at /openapi.yaml.
public enum OpenAPI {
    public static let document = #"""
openapi: 3.1.0
info:
  title: Waiver
  version: 0.1.0
  description: >-
    The shared register of policy exceptions. Every /api/v1 request needs `Authorization: Bearer <token>`
    (tokens come from `waiver admin add-user` / `add-token`); the actor of every change is the token's user.
    Errors are `{"error": {"code": "...", "message": "..."}}` with 400, 401, 403, 404, 409, 413 or 422.
servers:
  - url: http://127.0.0.1:8080
security:
  - bearer: []
components:
  securitySchemes:
    bearer: { type: http, scheme: bearer }
    session: { type: apiKey, in: cookie, name: waiver_session }
  schemas:
    Error:
      type: object
      properties:
        error:
          type: object
          properties: { code: { type: string }, message: { type: string } }
    Exception:
      type: object
      properties:
        id: { type: string, example: EX-7 }
        status: { type: string, enum: [pending, approved, rejected, revoked, expired, closed] }
        active: { type: boolean }
        policy: { type: string }
        category: { type: string }
        workspace: { type: string }
        subject_kind: { type: string, enum: [resource, person, device, account] }
        resources: { type: array, items: { type: string } }
        requester: { type: string }
        reason: { type: string }
        days: { type: integer }
        likelihood: { type: string, enum: [low, medium, high] }
        impact: { type: string, enum: [low, medium, high] }
        risk: { type: string }
        mitigations: { type: array, items: { type: string } }
        approvers: { type: object }
        approvals: { type: array, items: { type: object } }
        evidence: { type: array, items: { type: object } }
        created: { type: string, format: date-time }
        decided: { type: [string, "null"], format: date-time }
        expires: { type: [string, "null"], format: date-time }
        renews: { type: [string, "null"] }
        history: { type: array, items: { type: object } }
    CheckResult:
      type: object
      properties:
        verdict: { type: string, enum: [pass, blocked] }
        workspace: { type: string }
        summary: { type: object }
        results: { type: array, items: { type: object } }
        evaluation: { type: integer }
        requested: { type: array, items: { type: string } }
        rendered: { type: string, description: present when a format other than json was asked for }
    ExceptionRequest:
      type: object
      required: [reason]
      properties:
        policy: { type: string, description: "required, except on a renewal (then the renewed exception's)" }
        workspace: { type: string, maxLength: 200, description: "required for a resource exception; a program exception's defaults to program, a renewal's to the renewed exception's" }
        kind: { type: string, enum: [resource, person, device, account], description: "resource, or on a renewal the renewed exception's" }
        resources: { type: array, items: { type: string, maxLength: 2000 }, maxItems: 10000, description: "on a renewal, the renewed exception's when empty" }
        reason: { type: string }
        days: { type: integer }
        likelihood: { type: string, enum: [low, medium, high] }
        impact: { type: string, enum: [low, medium, high] }
        mitigations: { type: array, items: { type: string } }
        renews: { type: string }
        owner: { type: string, description: "the owner of a device or account (required for those kinds); they may not approve it" }
  responses:
    Error:
      description: an error
      content: { application/json: { schema: { $ref: "#/components/schemas/Error" } } }
    Exception:
      description: the exception
      content: { application/json: { schema: { $ref: "#/components/schemas/Exception" } } }
  parameters:
    id: { name: id, in: path, required: true, schema: { type: string }, example: EX-7 }
paths:
  /:
    get: { summary: "Web: redirects to the inbox", tags: [web], security: [], responses: { "303": { description: redirect } } }
  /login:
    get: { summary: "Web: sign-in form", tags: [web], security: [], responses: { "200": { description: HTML } } }
    post: { summary: "Web: sign in with an API token (form: token, csrf); sets the session cookie", tags: [web], security: [], responses: { "303": { description: to the inbox }, "401": { description: bad token }, "403": { description: CSRF } } }
  /logout:
    post: { summary: "Web: sign out (form: csrf)", tags: [web], security: [{ session: [] }], responses: { "303": { description: to sign-in } } }
  /inbox:
    get: { summary: "Web: requests waiting for this user", tags: [web], security: [{ session: [] }], responses: { "200": { description: HTML } } }
  /exceptions/{id}:
    get: { summary: "Web: one exception", tags: [web], security: [{ session: [] }], parameters: [{ $ref: "#/components/parameters/id" }], responses: { "200": { description: HTML } } }
  /exceptions/{id}/decide:
    post: { summary: "Web: approve, reject or revoke (form: action, comment, csrf)", tags: [web], security: [{ session: [] }], parameters: [{ $ref: "#/components/parameters/id" }], responses: { "200": { description: HTML }, "403": { description: refused or CSRF } } }
  /evidence/{sha256}:
    get: { summary: "Web: download evidence", tags: [web], security: [{ session: [] }], parameters: [{ name: sha256, in: path, required: true, schema: { type: string } }], responses: { "200": { description: the file } } }
  /register:
    get: { summary: "Web: the register with filters (status, policy, workspace, expiring_within), newest first in pages (page, per_page)", tags: [web], security: [{ session: [] }], responses: { "200": { description: HTML } } }
  /register.csv:
    get: { summary: "Web: the filtered register as CSV", tags: [web], security: [{ session: [] }], responses: { "200": { description: CSV } } }
  /policies/{id}:
    get: { summary: "Web: a policy with its exceptions per quarter", tags: [web], security: [{ session: [] }], parameters: [{ $ref: "#/components/parameters/id" }], responses: { "200": { description: HTML } } }
  /review:
    get: { summary: "Web: quarterly review", tags: [web], security: [{ session: [] }], responses: { "200": { description: HTML } } }
  /audit:
    get: { summary: "Web: audit chain status", tags: [web], security: [{ session: [] }], responses: { "200": { description: HTML } } }
  /audit/export.jsonl:
    get: { summary: "Web: audit export download", tags: [web], security: [{ session: [] }], responses: { "200": { description: JSON Lines } } }
  /health:
    get: { summary: Liveness, security: [], responses: { "200": { description: ok } } }
  /metrics:
    get: { summary: Prometheus metrics, security: [], responses: { "200": { description: text exposition format } } }
  /openapi.yaml:
    get: { summary: This document, security: [], responses: { "200": { description: OpenAPI 3.1 } } }
  /api/v1/me:
    get: { summary: The token's user, responses: { "200": { description: user }, "401": { $ref: "#/components/responses/Error" } } }
  /api/v1/evaluations:
    post:
      summary: Evaluate a plan and/or SARIF reports with the server's policies, against the register; recorded
      requestBody:
        content:
          application/json:
            schema:
              type: object
              required: [workspace]
              properties:
                workspace: { type: string, minLength: 1, maxLength: 200 }
                plan: { type: object, description: "`terraform show -json` output" }
                sarif: { type: array, items: { type: object } }
                unknown: { type: string, enum: [warn, block] }
                format: { type: string, enum: [json, text, sarif, junit, markdown] }
                commit_author: { type: string, description: may not approve the requests filed for this change }
                request: { type: object, description: "file a request per blocking violation: reason, days, likelihood, impact, mitigations" }
      responses:
        "201": { description: the check, content: { application/json: { schema: { $ref: "#/components/schemas/CheckResult" } } } }
        "400": { $ref: "#/components/responses/Error" }
        "413": { $ref: "#/components/responses/Error" }
        "422": { $ref: "#/components/responses/Error" }
  /api/v1/exceptions:
    get:
      summary: List exceptions
      parameters:
        - { name: status, in: query, schema: { type: string } }
        - { name: policy, in: query, schema: { type: string } }
        - { name: workspace, in: query, schema: { type: string } }
        - { name: requester, in: query, schema: { type: string } }
        - { name: expiring_within, in: query, schema: { type: string }, example: 7d }
        - { name: limit, in: query, schema: { type: integer } }
        - { name: format, in: query, schema: { type: string, enum: [json, text, csv] } }
      responses: { "200": { description: exceptions, content: { application/json: { schema: { type: array, items: { $ref: "#/components/schemas/Exception" } } } } } }
    post:
      summary: Request an exception
      requestBody: { content: { application/json: { schema: { $ref: "#/components/schemas/ExceptionRequest" } } } }
      responses: { "201": { $ref: "#/components/responses/Exception" }, "422": { $ref: "#/components/responses/Error" } }
  /api/v1/exceptions/{id}:
    get:
      summary: One exception with its history
      parameters: [{ $ref: "#/components/parameters/id" }, { name: format, in: query, schema: { type: string, enum: [json, text] } }]
      responses: { "200": { $ref: "#/components/responses/Exception" }, "404": { $ref: "#/components/responses/Error" } }
  /api/v1/exceptions/{id}/approve:
    post:
      summary: Approve (never your own request, only from the routed groups)
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { content: { application/json: { schema: { type: object, properties: { comment: { type: string }, days: { type: integer }, risk: { type: string, description: "re-rate the risk upward to this level of risk.levels" } } } } } }
      responses: { "200": { $ref: "#/components/responses/Exception" }, "403": { $ref: "#/components/responses/Error" }, "409": { $ref: "#/components/responses/Error" } }
  /api/v1/exceptions/{id}/reject:
    post:
      summary: Reject, with a comment
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { content: { application/json: { schema: { type: object, required: [comment], properties: { comment: { type: string } } } } } }
      responses: { "200": { $ref: "#/components/responses/Exception" }, "403": { $ref: "#/components/responses/Error" } }
  /api/v1/exceptions/{id}/revoke:
    post:
      summary: Revoke early, with a comment
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { content: { application/json: { schema: { type: object, required: [comment], properties: { comment: { type: string } } } } } }
      responses: { "200": { $ref: "#/components/responses/Exception" }, "403": { $ref: "#/components/responses/Error" } }
  /api/v1/exceptions/{id}/renew:
    post:
      summary: Request a renewal (a new request that references this one)
      parameters: [{ $ref: "#/components/parameters/id" }]
      requestBody: { content: { application/json: { schema: { $ref: "#/components/schemas/ExceptionRequest" } } } }
      responses: { "201": { $ref: "#/components/responses/Exception" }, "422": { $ref: "#/components/responses/Error" } }
  /api/v1/exceptions/{id}/evidence:
    post:
      summary: Upload an evidence file (kept by its SHA-256)
      parameters: [{ $ref: "#/components/parameters/id" }, { name: name, in: query, schema: { type: string } }]
      requestBody: { content: { application/octet-stream: { schema: { type: string, format: binary } } } }
      responses: { "201": { $ref: "#/components/responses/Exception" }, "413": { $ref: "#/components/responses/Error" } }
  /api/v1/evidence/{sha256}:
    get:
      summary: Download an evidence file
      parameters: [{ name: sha256, in: path, required: true, schema: { type: string } }]
      responses: { "200": { description: the file }, "404": { $ref: "#/components/responses/Error" } }
  /api/v1/policies:
    get: { summary: The server's policies, responses: { "200": { description: policies } } }
  /api/v1/policies/{id}:
    get:
      summary: One policy
      parameters: [{ $ref: "#/components/parameters/id" }]
      responses: { "200": { description: policy }, "404": { $ref: "#/components/responses/Error" } }
  /api/v1/reports:
    get:
      summary: Exception frequency, renewals, policies to review, orphaned exceptions
      parameters: [{ name: from, in: query, schema: { type: string } }, { name: to, in: query, schema: { type: string } }, { name: format, in: query, schema: { type: string, enum: [json, text, markdown] } }]
      responses: { "200": { description: report } }
  /api/v1/audit/events:
    get:
      summary: Audit events (optionally about one subject)
      parameters: [{ name: subject, in: query, schema: { type: string } }, { name: limit, in: query, schema: { type: integer } }]
      responses: { "200": { description: events } }
  /api/v1/audit/verify:
    get:
      summary: "Verify the register as evidence: the chain over every row, anchors, signed checkpoints, stored states against the log, evidence bytes"
      parameters:
        - { name: anchor, in: query, required: false, schema: { type: string, pattern: "^[0-9]+:[0-9a-fA-F]{64}$" },
            description: "SEQ:HASH of an event noted earlier (repeatable): shows events changed or cut from the end since" }
        - { name: public_key, in: query, required: false, schema: { type: string },
            description: "ed25519:BASE64 of the checkpoint signer: the chain is verified against the register's signed checkpoints" }
      responses:
        "200": { description: "intact, events, first_bad, problem, head (SEQ:HASH of the last verified event), findings (exceptions and evidence the log does not back), checkpoints (verified)" }
        "400": { $ref: "#/components/responses/Error" }
  /api/v1/audit/checkpoints:
    get: { summary: "Signed checkpoints of the log's head, with the server's public key", responses: { "200": { description: "public_key, checkpoints" } } }
    post:
      summary: Sign the log's head now with the server's Ed25519 key
      responses:
        "201": { description: "the checkpoint: seq, hash, time, time_iso, key_id, signature" }
        "409": { $ref: "#/components/responses/Error" }
  /api/v1/audit/export:
    get: { summary: The audit log as JSON Lines, responses: { "200": { description: one event a line } } }
  /api/v1/expire:
    post: { summary: "Re-check exceptions past expiry now (the scheduler also does it)", responses: { "200": { description: outcomes } } }
  /api/v1/admin/webhooks:
    get: { summary: Webhook deliveries (administrators), responses: { "200": { description: deliveries }, "403": { $ref: "#/components/responses/Error" } } }
"""#
}
