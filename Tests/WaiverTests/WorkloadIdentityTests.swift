import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverServer

/// Pipelines authenticate with their CI system's OIDC token, verified against a real provider on
/// loopback (its discovery document and JWK set); trust rules bind repositories and refs to workspaces.
@Suite("Workload identity: pipelines sign in with their CI system's token", .serialized, needsPeers(["flask", "joserfc", "authlib"]))
struct WorkloadIdentityTests {
    /// The server trusting `provider` for acme/payments on main (workspace shop) and the GitLab
    /// project acme/infra on any branch (workspaces infra-*), with alice in security.
    func fixture(_ provider: IdentityProvider) async throws -> ServerFixture {
        var identity = IdentitySettings()
        identity.pipelines = [
            PipelineTrustRule(issuer: provider.issuer, repository: Glob("acme/payments"), ref: Glob("refs/heads/main"), workspaces: [Glob("shop")]),
            PipelineTrustRule(issuer: provider.issuer, repository: Glob("acme/infra"), workspaces: [Glob("infra-*")]),
        ]
        var f = try await ServerFixture(identity: identity)
        try await f.state.store.putUser(User(name: "alice", groups: ["security"], admin: false), actor: "setup", now: t0)
        let t = APIToken.generate()
        try await f.state.store.addToken(id: t.id, secretHash: t.hash, user: "alice", actor: "setup", now: t0)
        f.tokens["alice"] = t.token
        return f
    }

    /// GitHub Actions' claims for a run of acme/payments on main triggered by alice, valid at t0.
    func github(_ provider: IdentityProvider, repository: String = "acme/payments", ref: String = "refs/heads/main",
                audience: String = "waiver", at time: Date = t0) -> Value.Object {
        Value.Object([
            ("sub", .string("repo:\(repository):ref:\(ref)")), ("aud", .string(audience)), ("repository", .string(repository)),
            ("ref", .string(ref)), ("workflow", "deploy"), ("actor", "alice"), ("triggering_actor", "alice"), ("run_id", "4242"),
            ("iat", epoch(time)), ("nbf", epoch(time)), ("exp", epoch(time.addingTimeInterval(300))),
        ])
    }

    func bearer(_ token: String) -> HTTPFields {
        var h = HTTPFields()
        h[.authorization] = "Bearer \(token)"
        h[.contentType] = "application/json"
        return h
    }

    func call(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String, json: String? = nil) async throws -> (Int, Value) {
        try await client.execute(uri: uri, method: method, headers: bearer(token), body: json.map { ByteBuffer(string: $0) }) { r in
            let text = String(buffer: r.body)
            return (Int(r.status.code), (try? JSONReader.parse(Data(text.utf8))) ?? .string(text))
        }
    }

    func message(_ v: Value) -> String { v["error"]?["message"]?.stringValue ?? "" }

    @Test func aGitHubRunIsThePipelineItsClaimsNameAndWhoTriggeredItCannotApprove() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        let plan = try String(contentsOfFile: repoRoot + "/Examples/plans/web-app.json", encoding: .utf8)
        let token = try await provider.mint(github(provider))
        try await f.app().test(.router) { client in
            let (me, who) = try await call(client, .get, "/api/v1/me", token: token)
            #expect(me == 200 && who["name"] == "pipeline:acme/payments@refs/heads/main" && who["groups"] == [])
            let envelope = #"{"workspace":"shop","commit_author":"pat","request":{"reason":"launch"},"plan":"# + plan + "}"
            let (status, result) = try await call(client, .post, "/api/v1/evaluations", token: token, json: envelope)
            #expect(status == 201)
            #expect(result["requested"]?.arrayValue?.count == 5)
            let net = try #require(result["results"]?.arrayValue?.first { $0["policy"] == "NET-001" })
            let ids = [try #require(net["exception"]?.stringValue)]
            // Who triggered the run (from the verified claims) may not approve what it requested ...
            let (byAlice, aliceWhy) = try await client.call(.post, "/api/v1/exceptions/\(ids[0])/approve", as: "alice", f, json: "{}")
            #expect(byAlice == 403 && message(aliceWhy).contains("alice cannot approve"), "\(aliceWhy)")
            // ... nor the commit author the pipeline declared ...
            #expect(try await client.call(.post, "/api/v1/exceptions/\(ids[0])/approve", as: "pat", f, json: "{}").0 == 403)
            // ... while sam, in security and not involved, may.
            let (bySam, samWhy) = try await client.call(.post, "/api/v1/exceptions/\(ids[0])/approve", as: "sam", f, json: "{}")
            #expect(bySam == 200, "\(samWhy)")
            // The audit log keeps the verified claims, and marks the declared commit author unverified.
            let events = try await f.state.store.auditEvents(subject: nil)
            let recorded = try #require(events.last { $0.action == "check.recorded" })
            #expect(recorded.actor == "pipeline:acme/payments@refs/heads/main")
            let payload = try JSONReader.parse(Data(recorded.payload.utf8))
            #expect(payload["provenance"]?["pipeline"]?["actor"] == "alice")
            #expect(payload["provenance"]?["pipeline"]?["workflow"] == "deploy")
            #expect(payload["provenance"]?["pipeline"]?["run"] == "4242")
            #expect(payload["provenance"]?["pipeline"]?["issuer"]?.stringValue == provider.issuer)
            #expect(payload["provenance"]?["commit_author"] == ["name": "pat", "verified": false])
            let requested = try #require(events.first { $0.action == "exception.requested" })
            let r = try JSONReader.parse(Data(requested.payload.utf8))
            #expect(r["conflicted"] == ["alice", "pat"])
            #expect(r["provenance"]?["pipeline"]?["repository"] == "acme/payments")
        }
    }

    @Test func aGitLabJobIsMappedToTheSameRules() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        let token = try await provider.mint(Value.Object([
            ("sub", "project_path:acme/infra:ref_type:branch:ref:feature-x"), ("aud", "waiver"), ("project_path", "acme/infra"),
            ("ref", "feature-x"), ("ref_type", "branch"), ("user_login", "bob"), ("user_email", "bob@example.com"), ("pipeline_id", "77"),
            ("iat", epoch(t0)), ("nbf", epoch(t0)), ("exp", epoch(t0.addingTimeInterval(300))),
        ]))
        try await f.app().test(.router) { client in
            let (me, who) = try await call(client, .get, "/api/v1/me", token: token)
            #expect(me == 200 && who["name"] == "pipeline:acme/infra@refs/heads/feature-x")
            let request = #"{"policy":"NET-001","workspace":"infra-prod","resources":["sg.web"],"reason":"vendor access","days":7}"#
            let (status, e) = try await call(client, .post, "/api/v1/exceptions", token: token, json: request)
            #expect(status == 201, "\(e)")
            #expect(e["conflicted"] == ["bob", "bob@example.com"])
            // A workspace outside its rules is refused, for requests and for evaluations alike.
            let (outside, why) = try await call(client, .post, "/api/v1/exceptions", token: token,
                                                json: #"{"policy":"NET-001","workspace":"shop","resources":["sg.web"],"reason":"vendor access","days":7}"#)
            #expect(outside == 403 && message(why).contains("may not act on workspace \"shop\"") && message(why).contains("infra-*"), "\(why)")
            let (evaluated, ev) = try await call(client, .post, "/api/v1/evaluations", token: token, json: #"{"workspace":"shop","plan":{"format_version":"1.2","resource_changes":[]}}"#)
            #expect(evaluated == 403, "\(ev)")
            #expect(try await call(client, .post, "/api/v1/evaluations", token: token, json: #"{"workspace":"infra-dev","plan":{"format_version":"1.2","resource_changes":[]}}"#).0 == 201)
        }
    }

    @Test func anHCPTerraformRunIsItsOrganizationAndWorkspace() async throws {
        let provider = try IdentityProvider()
        var identity = IdentitySettings()
        identity.pipelines = [PipelineTrustRule(issuer: provider.issuer, repository: Glob("acme/networking-*"), workspaces: [Glob("networking")])]
        let f = try await ServerFixture(identity: identity)
        let token = try await provider.mint(Value.Object([
            ("sub", "organization:acme:project:core:workspace:networking-prod:run_phase:plan"), ("aud", "waiver"),
            ("terraform_organization_name", "acme"), ("terraform_workspace_name", "networking-prod"), ("terraform_run_phase", "plan"),
            ("terraform_run_id", "run-42"), ("iat", epoch(t0)), ("nbf", epoch(t0)), ("exp", epoch(t0.addingTimeInterval(300))),
        ]))
        try await f.app().test(.router) { client in
            let (me, who) = try await call(client, .get, "/api/v1/me", token: token)
            #expect(me == 200 && who["name"] == "pipeline:acme/networking-prod", "\(who)")
            #expect(try await call(client, .post, "/api/v1/evaluations", token: token, json: #"{"workspace":"networking","plan":{"format_version":"1.2","resource_changes":[]}}"#).0 == 201)
        }
    }

    @Test func aRepositoryOrRefOutsideTheTrustRulesIsForbidden() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        let otherRepo = try await provider.mint(github(provider, repository: "mallory/payments"))
        let otherRef = try await provider.mint(github(provider, ref: "refs/heads/try-something"))
        try await f.app().test(.router) { client in
            let (a, why) = try await call(client, .get, "/api/v1/me", token: otherRepo)
            #expect(a == 403 && message(why).contains("no identity.pipelines rule admits mallory/payments"), "\(why)")
            #expect(try await call(client, .get, "/api/v1/me", token: otherRef).0 == 403)
        }
    }

    @Test func forgedExpiredMisaddressedAndUntrustedTokensAreRefused() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        let good = github(provider)
        var wrongAudience = good
        wrongAudience.append("aud", "https://github.com/acme")
        var untrusted = good
        untrusted.append("iss", "https://token.actions.githubusercontent.com")
        let cases: [(String, String, String)] = [
            ("a key the issuer never published", try await provider.mint(good, stranger: true), "does not publish"),
            ("a published key id on a stranger's signature", try await provider.mint(good, stranger: true, kid: "key-1"), "signature does not verify"),
            ("another audience", try await provider.mint(wrongAudience), "another audience"),
            ("an issuer the server does not trust", try await provider.mint(untrusted), "is not trusted"),
        ]
        let fetchesBefore = try await provider.jwksFetches
        try await f.app().test(.router) { client in
            for (what, token, expected) in cases {
                let (status, why) = try await call(client, .get, "/api/v1/me", token: token)
                #expect(status == 401 && message(why).contains(expected), "\(what): \(status) \(why)")
            }
            // An unsigned token ("alg": "none") is refused before any key is looked at.
            let parts = try await provider.mint(good).split(separator: ".")
            let none = Data(#"{"alg":"none","kid":"key-1"}"#.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "") + "." + parts[1] + "."
            let (unsigned, why) = try await call(client, .get, "/api/v1/me", token: none)
            #expect(unsigned == 401 && message(why).contains("not an asymmetric signature"), "\(why)")
            // Expiry is the server's clock's: valid now, refused once the clock passes exp (and the leeway).
            let token = try await provider.mint(good)
            #expect(try await call(client, .get, "/api/v1/me", token: token).0 == 200)
            f.clock.set(t0.addingTimeInterval(300 + 61))
            let (expired, late) = try await call(client, .get, "/api/v1/me", token: token)
            #expect(expired == 401 && message(late).contains("expired"), "\(late)")
        }
        // The untrusted issuer was never fetched, and the trusted one's keys once: the unknown key id
        // came moments after that fetch, so it did not make the server fetch them again.
        #expect(try await provider.jwksFetches - fetchesBefore == 1)
    }

    @Test func aRotatedKeyIsFetchedOnceItsIdIsSeenAndForgedIdsCannotHammerTheProvider() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        try await f.app().test(.router) { client in
            #expect(try await call(client, .get, "/api/v1/me", token: try await provider.mint(github(provider))).0 == 200)
            #expect(try await provider.jwksFetches == 1)
            // A stream of unknown key ids within the refresh interval: at most one refetch.
            for i in 0..<5 {
                #expect(try await call(client, .get, "/api/v1/me", token: try await provider.mint(github(provider), stranger: true, kid: "forged-\(i)")).0 == 401)
            }
            #expect(try await provider.jwksFetches == 1, "a fetch moments ago is not repeated")
            // The provider rotates its key; once the refresh interval has passed, a token signed with
            // the new key makes the server fetch the keys again and is accepted.
            let kid = try await provider.rotate()
            f.clock.set(t0.addingTimeInterval(31))
            let rotated = try await provider.mint(github(provider, at: t0.addingTimeInterval(31)))
            #expect(rotated.split(separator: ".").first.map { String($0) } != nil && !kid.isEmpty)
            #expect(try await call(client, .get, "/api/v1/me", token: rotated).0 == 200)
            #expect(try await provider.jwksFetches == 2)
        }
    }

    /// The CLI in a CI job: no Waiver token, the CI system's OIDC token instead.
    @Test func theCLIAuthenticatesWithGitHubsAndGitLabsTokens() async throws {
        let provider = try IdentityProvider()
        let w = try Workspace()
        let sam = try w.addUser("sam", ["security"])
        _ = try w.addUser("alice", ["security"])
        let config = w.dir.read("waiver.yaml") ?? ""
        w.dir.write("waiver.yaml", config + """
            identity:
              pipelines:
                - issuer: \(provider.issuer)
                  repository: acme/payments
                  ref: refs/heads/main
                  workspaces: [shop]
            """ + "\n")
        let server = LiveServer(w, args: ["--public-url", "https://waiver.example.com/"])
        try server.start()
        // What GitHub's token service signs for this job (it sets aud, iat, nbf and exp itself).
        _ = try await provider.post("/control/github", ["claims": [
            "sub": "repo:acme/payments:ref:refs/heads/main", "repository": "acme/payments", "ref": "refs/heads/main",
            "workflow": "deploy", "actor": "alice", "run_id": "9",
        ]])
        // GitHub Actions: the job's request URL and token; the CLI asks for the audience "waiver".
        let env = ["ACTIONS_ID_TOKEN_REQUEST_URL": provider.issuer + "/github/token?api-version=2.0",
                   "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "github-request-token", "WAIVER_REGISTER": w.dir.path + "/unused.sqlite"]
        let check = try waiver(["check", "--plan", webApp, "--workspace", "shop", "--request", "--reason", "launch", "--server", server.url], in: w.dir.path, env: env)
        #expect(check.code == 1 && check.out.contains("5 pending"), "\(check.err)")
        // Each request it filed is named with its page (serve --public-url).
        #expect(check.err.contains("requested for NET-001 on module.network.aws_security_group.bastion: https://waiver.example.com/exceptions/EX-"), "\(check.err)")
        #expect(check.out.contains("— https://waiver.example.com/exceptions/EX-"), "\(check.out)")
        let list = try server.run(["list", "--status", "pending", "--format", "json"], token: sam)
        #expect(list.out.contains("\"requester\": \"pipeline:acme/payments@refs/heads/main\""), "\(list.out)")
        // Another workspace: refused by the trust rules, one line, exit 2.
        let outside = try waiver(["check", "--plan", webApp, "--workspace", "billing", "--server", server.url], in: w.dir.path, env: env)
        #expect(outside.code == 2 && outside.err.contains("may not act on workspace \"billing\"") && outside.err.contains("HTTP 403"), "\(outside.err)")
        // A token the job already holds (GitLab's id_tokens, HCP Terraform): $WAIVER_ID_TOKEN.
        let held = try await provider.mint(github(provider, at: Date()))
        let listed = try waiver(["list", "--server", server.url], in: w.dir.path, env: ["WAIVER_ID_TOKEN": held, "WAIVER_REGISTER": w.dir.path + "/unused.sqlite"])
        #expect(listed.code == 0 && listed.out.contains("5 exceptions"), "\(listed.err)")
        // No credential at all: one line naming the ways to give one.
        let none = try waiver(["list", "--server", server.url], in: w.dir.path, env: [
            "WAIVER_REGISTER": w.dir.path + "/unused.sqlite", "WAIVER_TOKEN": "", "WAIVER_ID_TOKEN": "", "ACTIONS_ID_TOKEN_REQUEST_URL": "",
            "TFC_WORKLOAD_IDENTITY_TOKEN": "",
        ])
        #expect(none.code == 2 && none.err.contains("$WAIVER_TOKEN") && none.err.contains("$WAIVER_ID_TOKEN"), "\(none.err)")
        #expect(server.stop() == 0)
    }

    @Test func theTrustRulesAreReadFromWaiverYamlAndTheirMistakesNamed() throws {
        let good = try ConfigLoader.parse(Data("""
            identity:
              audience: https://waiver.example.com
              pipelines:
                - issuer: https://token.actions.githubusercontent.com
                  repository: acme/*
                  ref: refs/heads/main
                  workspaces: [shop, shop-*]
            """.utf8), file: "waiver.yaml")
        #expect(good.identity.audience == "https://waiver.example.com")
        let rule = try #require(good.identity.pipelines.first)
        #expect(rule.admits(PipelineIdentity(issuer: "https://token.actions.githubusercontent.com", subject: "s", repository: "acme/web", ref: "refs/heads/main")))
        #expect(!rule.admits(PipelineIdentity(issuer: "https://token.actions.githubusercontent.com", subject: "s", repository: "acme/web", ref: "refs/heads/dev")))
        #expect(!rule.admits(PipelineIdentity(issuer: "https://gitlab.com", subject: "s", repository: "acme/web", ref: "refs/heads/main")))
        let bad = """
            identity:
              pipelines:
                - issuer: http://issuer.example.com
                  repository: acme/web
                  workspaces: [shop]
                - issuer: https://gitlab.com
                  repository: acme/web
            """
        do {
            _ = try ConfigLoader.parse(Data(bad.utf8), file: "waiver.yaml")
            Issue.record("a plain-http issuer and a rule without workspaces were accepted")
        } catch {
            let text = error.description
            #expect(text.contains("waiver.yaml:3") && text.contains("must be https"), "\(text)")
            #expect(text.contains("waiver.yaml:6") && text.contains("needs issuer, repository and workspaces"), "\(text)")
        }
    }
}
