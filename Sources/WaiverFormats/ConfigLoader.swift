import Foundation
import WaiverCore
import Yams

/// Reads `waiver.yaml` (configuration.md). Every key has a default; an unknown key, a group that is
/// referenced but not defined, or a duration past the cap is an error naming the key and line.
public enum ConfigLoader {
    static let topKeys = ["policies", "exceptions", "groups", "routing", "risk", "notify", "sarif", "reports", "retention", "identity", "run_tasks", "server", "roles"]

    /// Loads the file at `path`; when `required` is false and the file does not exist, defaults apply.
    public static func load(path: String, required: Bool) throws(InputErrors) -> Configuration {
        guard FileManager.default.fileExists(atPath: path) else {
            if required { throw InputErrors([InputError(file: path, message: "configuration file not found")]) }
            return Configuration()
        }
        let data: Data
        do throws(InputError) {
            data = try InputFile.read(path, maxBytes: 8 << 20)
        } catch {
            throw InputErrors([error])
        }
        return try parse(data, file: path)
    }

    public static func parse(_ data: Data, file: String) throws(InputErrors) -> Configuration {
        var yaml = YAMLFile(file: file)
        var config = Configuration()
        guard let root = yaml.compose(data) else {
            if !yaml.errors.isEmpty { throw InputErrors(yaml.errors) }
            return config  // an empty file works
        }
        var referencedGroups: [(String, Node)] = []
        guard let top = yaml.mapping(root, nil, what: "waiver.yaml", known: topKeys) else { throw InputErrors(yaml.errors) }
        for (key, _, value) in top {
            switch key {
            case "policies":
                if let s = yaml.string(value, key, key) { config.policies = s }
            case "exceptions":
                guard let pairs = yaml.mapping(value, key, what: "exceptions", known: ["default_days", "max_days", "reminders"]) else { continue }
                for (k, _, v) in pairs {
                    let name = "exceptions.\(k)"
                    switch k {
                    case "default_days":
                        if let n = yaml.int(v, name, name, range: 1...Configuration.absoluteMaxDays) { config.defaultDays = n }
                    case "max_days":
                        if let n = yaml.int(v, name, name, range: 1...Configuration.absoluteMaxDays) { config.maxDays = n }
                    case "reminders":
                        guard let list = yaml.strings(v, name, name) else { continue }
                        var seconds: [Int] = []
                        for text in list {
                            guard let d = parseDuration(text), d > 0 else {
                                yaml.error(v, name, "'\(text)' is not a duration (use 30m, 12h, 7d or 2w)")
                                continue
                            }
                            seconds.append(d)
                        }
                        config.reminders = seconds.sorted(by: >)
                    default: break
                    }
                }
                if config.defaultDays > config.maxDays {
                    yaml.error(value, "exceptions.default_days", "default_days \(config.defaultDays) is past max_days \(config.maxDays)")
                }
            case "groups":
                guard let pairs = yaml.mapping(value, key, what: "groups", known: []) else { continue }
                config.groups = [:]
                for (name, _, v) in pairs {
                    if let members = yaml.strings(v, "groups.\(name)", "groups.\(name)") { config.groups[name] = members }
                }
            case "routing":
                guard let pairs = yaml.mapping(value, key, what: "routing", known: []) else { continue }
                config.routing = [:]
                for (category, _, v) in pairs {
                    if let groups = yaml.strings(v, "routing.\(category)", "routing.\(category)") {
                        config.routing[category] = groups
                        referencedGroups += groups.map { ($0, v) }
                    }
                }
            case "risk":
                parseRisk(&yaml, value, into: &config, referenced: &referencedGroups)
            case "notify":
                if case .sequence = value {
                    config.notify = parseWebhooks(&yaml, value, "notify")
                    continue
                }
                guard let pairs = yaml.mapping(value, key, what: "notify", known: ["webhooks", "email", "nudge_after", "escalate_after", "escalate_to"]) else { continue }
                for (k, _, v) in pairs {
                    let name = "notify.\(k)"
                    switch k {
                    case "webhooks": config.notify = parseWebhooks(&yaml, v, name)
                    case "email": config.email = parseEmail(&yaml, v)
                    case "nudge_after", "escalate_after":
                        guard let text = yaml.string(v, name, k) else { continue }
                        guard let d = parseDuration(text), d >= 60 else {
                            yaml.error(v, name, "'\(text)' is not a duration of a minute or more (use 12h, 1d or 3d)")
                            continue
                        }
                        if k == "nudge_after" { config.nudgeAfter = d } else { config.escalateAfter = d }
                    case "escalate_to":
                        guard let groups = yaml.mapping(v, name, what: name, known: []) else { continue }
                        for (group, _, gv) in groups {
                            if let to = yaml.strings(gv, "\(name).\(group)", group) {
                                config.escalateTo[group] = to
                                referencedGroups += to.map { ($0, gv) }
                            }
                        }
                    default: break
                    }
                }
                if let n = config.nudgeAfter, let e = config.escalateAfter, e <= n {
                    yaml.error(value, "notify.escalate_after", "escalate_after must be later than nudge_after")
                }
            case "sarif":
                guard let pairs = yaml.mapping(value, key, what: "sarif", known: []) else { continue }
                for (pattern, _, v) in pairs {
                    if let category = yaml.string(v, "sarif.\(pattern)", "sarif.\(pattern)") {
                        config.sarif.append((Glob(pattern), category))
                    }
                }
            case "reports":
                guard let pairs = yaml.mapping(value, key, what: "reports", known: ["review_threshold"]) else { continue }
                for (k, _, v) in pairs {
                    if let n = yaml.int(v, "reports.\(k)", "reports.\(k)", range: 1...100_000) { config.reviewThreshold = n }
                }
            case "retention":
                guard let pairs = yaml.mapping(value, key, what: "retention", known: ["evaluations", "webhooks"]) else { continue }
                for (k, _, v) in pairs {
                    guard let text = yaml.string(v, "retention.\(k)", "retention.\(k)") else { continue }
                    if let d = parseDuration(text), d >= 86_400 {
                        if k == "webhooks" { config.keepDeliveries = d } else { config.keepEvaluations = d }
                    } else {
                        yaml.error(v, "retention.\(k)", "'\(text)' is not a duration of a day or more (use 30d, 13w or 365d)")
                    }
                }
            case "identity":
                parseIdentity(&yaml, value, into: &config)
            case "run_tasks":
                parseRunTasks(&yaml, value, into: &config)
            case "server":
                guard let pairs = yaml.mapping(value, key, what: "server", known: ["metrics"]) else { continue }
                for (k, _, v) in pairs {
                    guard let text = yaml.string(v, "server.\(k)", "server.\(k)") else { continue }
                    switch text {
                    case "open": config.metricsOpen = true
                    case "token": config.metricsOpen = false
                    default: yaml.error(v, "server.metrics", "'\(text.clipped(40))' is not token or open")
                    }
                }
            case "roles":
                guard let pairs = yaml.mapping(value, key, what: "roles", known: ["auditors"]) else { continue }
                for (k, _, v) in pairs {
                    if let group = yaml.string(v, "roles.\(k)", "roles.\(k)"), !group.isEmpty { config.auditorGroup = group }
                }
            default: break
            }
        }
        if !config.groups.isEmpty {
            for (group, node) in referencedGroups where config.groups[group] == nil {
                let hint = closestMatch(to: group, in: Array(config.groups.keys)).map { " (did you mean '\($0)'?)" } ?? ""
                yaml.error(node, "groups", "group '\(group)' is referenced but not defined under groups:\(hint)")
            }
        }
        if !yaml.errors.isEmpty { throw InputErrors(yaml.errors) }
        return config
    }

    /// A list of webhooks (`notify:` as a list, or `notify.webhooks`).
    static func parseWebhooks(_ yaml: inout YAMLFile, _ value: Node, _ key: String) -> [Configuration.Webhook] {
        guard case .sequence(let hooks) = value else {
            yaml.error(value, key, "'\(key)' must be a list of webhooks")
            return []
        }
        var out: [Configuration.Webhook] = []
        for hook in hooks {
            guard let pairs = yaml.mapping(hook, "notify", what: "a webhook", known: ["url", "secret_env", "format"]) else { continue }
            var url: String?, secret: String?, format = "json"
            for (k, _, v) in pairs {
                switch k {
                case "url": url = yaml.string(v, "notify.url", k)
                case "secret_env": secret = yaml.string(v, "notify.secret_env", k)
                case "format":
                    if let f = yaml.string(v, "notify.format", k) {
                        if ["json", "slack"].contains(f) { format = f } else {
                            yaml.error(v, "notify.format", "unknown format '\(f)' (use json or slack)")
                        }
                    }
                default: break
                }
            }
            if let url {
                if URL(string: url)?.scheme.map({ ["http", "https"].contains($0) }) != true {
                    yaml.error(hook, "notify.url", "'\(url)' is not an http(s) URL")
                } else {
                    out.append(.init(url: url, secretEnv: secret, format: format))
                }
            } else {
                yaml.error(hook, "notify", "a webhook needs a url")
            }
        }
        return out
    }

    /// `run_tasks.terraform`: the HMAC key's variable, HCP Terraform's address, the workspace mapping.
    static func parseRunTasks(_ yaml: inout YAMLFile, _ value: Node, into config: inout Configuration) {
        guard let kinds = yaml.mapping(value, "run_tasks", what: "run_tasks", known: ["terraform"]) else { return }
        for (_, _, v) in kinds {
            let what = "run_tasks.terraform"
            guard let fields = yaml.mapping(v, what, what: what, known: ["hmac_key_env", "address", "workspace"]) else { continue }
            var key: String?
            var task = Configuration.TerraformRunTask(hmacKeyEnv: "")
            for (k, _, fv) in fields {
                switch k {
                case "hmac_key_env": key = yaml.string(fv, "\(what).hmac_key_env", k)
                case "address":
                    if let a = yaml.string(fv, "\(what).address", k) {
                        let url = URL(string: a)
                        if url?.host == nil || (url?.scheme != "https" && !(url?.scheme == "http" && isLoopback(url?.host ?? ""))) {
                            yaml.error(fv, "\(what).address", "'\(a)' is not an https URL (http only on loopback)")
                        } else {
                            task.address = a.hasSuffix("/") ? String(a.dropLast()) : a
                        }
                    }
                case "workspace":
                    if let w = yaml.string(fv, "\(what).workspace", k) {
                        if !w.contains("{workspace}") { yaml.error(fv, "\(what).workspace", "'\(w)' must contain {workspace}") } else { task.workspace = w }
                    }
                default: break
                }
            }
            guard let key, !key.isEmpty else {
                yaml.error(v, what, "a run task needs hmac_key_env: the variable holding the HMAC key set on the run task")
                continue
            }
            task.hmacKeyEnv = key
            config.terraformRunTask = task
        }
    }

    /// `notify.email`: the SMTP server.
    static func parseEmail(_ yaml: inout YAMLFile, _ value: Node) -> Configuration.Email? {
        let what = "notify.email"
        guard let fields = yaml.mapping(value, what, what: what, known: ["host", "port", "tls", "username", "password_env", "from", "ca_file", "addresses"]) else { return nil }
        var host: String?, from: String?, port: Int?, tls = Configuration.Email.Security.starttls
        var rest: [(String, Node)] = []
        for (k, _, v) in fields {
            let name = "\(what).\(k)"
            switch k {
            case "host": host = yaml.string(v, name, k)
            case "from": from = yaml.string(v, name, k)
            case "port": port = yaml.int(v, name, name, range: 1...65535)
            case "tls":
                if let t = yaml.string(v, name, k) {
                    if let s = Configuration.Email.Security(rawValue: t) { tls = s } else { yaml.error(v, name, "'\(t)' is not starttls, implicit or none") }
                }
            default: rest.append((k, v))
            }
        }
        guard let host, !host.isEmpty, let from, from.contains("@") else {
            yaml.error(value, what, "e-mail needs host and from (an address)")
            return nil
        }
        if tls == .none, !isLoopback(host) {
            yaml.error(value, "\(what).tls", "tls: none is only for a server on this host; use starttls or implicit")
            return nil
        }
        var e = Configuration.Email(host: host, port: port ?? (tls == .implicit ? 465 : 587), from: from)
        e.security = tls
        for (k, v) in rest {
            let name = "\(what).\(k)"
            switch k {
            case "username": e.username = yaml.string(v, name, k)
            case "password_env": e.passwordEnv = yaml.string(v, name, k)
            case "ca_file": e.caFile = yaml.string(v, name, k)
            case "addresses":
                guard let pairs = yaml.mapping(v, name, what: name, known: []) else { continue }
                for (user, _, av) in pairs {
                    if let a = yaml.string(av, "\(name).\(user)", user) {
                        if a.contains("@"), !a.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "<" || $0 == ">" }) { e.addresses[user] = a } else {
                            yaml.error(av, "\(name).\(user)", "'\(a.clipped())' is not an e-mail address")
                        }
                    }
                }
            default: break
            }
        }
        return e
    }

    /// `identity`: the audience pipelines' tokens carry and the rules that trust them.
    static func parseIdentity(_ yaml: inout YAMLFile, _ value: Node, into config: inout Configuration) {
        guard let pairs = yaml.mapping(value, "identity", what: "identity", known: ["audience", "pipelines", "oidc"]) else { return }
        for (k, _, v) in pairs {
            switch k {
            case "audience":
                if let a = yaml.string(v, "identity.audience", k) {
                    if a.isEmpty || a.count > 200 { yaml.error(v, "identity.audience", "an audience is 1 to 200 characters") } else { config.identity.audience = a }
                }
            case "pipelines":
                guard case .sequence(let rules) = v else {
                    yaml.error(v, "identity.pipelines", "'identity.pipelines' must be a list of {issuer, repository, ref, workspaces}")
                    continue
                }
                for rule in rules {
                    let what = "identity.pipelines"
                    guard let fields = yaml.mapping(rule, what, what: "a pipeline rule", known: ["issuer", "repository", "ref", "workspaces"]) else { continue }
                    var issuer: String?, repository: String?, ref: String?, workspaces: [String]?
                    var issuerNode = rule
                    for (f, _, fv) in fields {
                        switch f {
                        case "issuer":
                            issuer = yaml.string(fv, "\(what).issuer", f)
                            issuerNode = fv
                        case "repository": repository = yaml.string(fv, "\(what).repository", f)
                        case "ref": ref = yaml.string(fv, "\(what).ref", f)
                        case "workspaces": workspaces = yaml.strings(fv, "\(what).workspaces", f)
                        default: break
                        }
                    }
                    guard let issuer, let repository, let workspaces, !workspaces.isEmpty else {
                        yaml.error(rule, what, "a pipeline rule needs issuer, repository and workspaces (ref is optional)")
                        continue
                    }
                    if let why = issuerProblem(issuer) {
                        yaml.error(issuerNode, "\(what).issuer", why)
                        continue
                    }
                    config.identity.pipelines.append(PipelineTrustRule(issuer: issuer, repository: Glob(repository), ref: ref.map(Glob.init),
                                                                      workspaces: workspaces.map(Glob.init)))
                }
            case "oidc":
                config.identity.oidc = parseOIDC(&yaml, v)
            default: break
            }
        }
    }

    static let oidcKeys = ["issuer", "client_id", "client_secret_env", "name", "user_claim", "groups_claim", "group_map", "scopes"]

    /// `identity.oidc`: the provider people sign in with.
    static func parseOIDC(_ yaml: inout YAMLFile, _ value: Node) -> OIDCSettings? {
        let what = "identity.oidc"
        guard let fields = yaml.mapping(value, what, what: what, known: oidcKeys) else { return nil }
        var issuer: String?, client: String?, issuerNode = value
        var rest: [(String, Node)] = []
        for (k, _, v) in fields {
            switch k {
            case "issuer":
                issuer = yaml.string(v, "\(what).issuer", k)
                issuerNode = v
            case "client_id": client = yaml.string(v, "\(what).client_id", k)
            default: rest.append((k, v))
            }
        }
        guard let issuer, let client, !client.isEmpty else {
            yaml.error(value, what, "single sign-on needs issuer and client_id")
            return nil
        }
        if let why = issuerProblem(issuer) {
            yaml.error(issuerNode, "\(what).issuer", why)
            return nil
        }
        var o = OIDCSettings(issuer: issuer, clientId: client)
        for (k, v) in rest {
            let name = "\(what).\(k)"
            switch k {
            case "client_secret_env": o.clientSecretEnv = yaml.string(v, name, k)
            case "name": if let n = yaml.string(v, name, k) { o.name = n }
            case "user_claim": if let c = yaml.string(v, name, k) { o.userClaim = c }
            case "groups_claim": if let c = yaml.string(v, name, k) { o.groupsClaim = c }
            case "scopes":
                if let list = yaml.strings(v, name, k) {
                    if !list.contains("openid") { yaml.error(v, name, "the scopes must include openid") } else { o.scopes = list }
                }
            case "group_map":
                guard let pairs = yaml.mapping(v, name, what: name, known: []) else { continue }
                for (group, _, gv) in pairs {
                    if case .scalar = gv, let one = yaml.string(gv, "\(name).\(group)", group) {
                        o.groupMap[group] = [one]
                    } else if let many = yaml.strings(gv, "\(name).\(group)", group) {
                        o.groupMap[group] = many
                    }
                }
            default: break
            }
        }
        return o
    }

    /// A host name for this machine: where plain http (a test issuer) or an SMTP server without TLS may be.
    public static func isLoopback(_ host: String) -> Bool { ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host) }

    /// Why an issuer URL cannot be trusted (nil when it can): https, or http only on a loopback host
    /// (a test issuer), with no query or fragment, since the server fetches its discovery document.
    public static func issuerProblem(_ issuer: String) -> String? {
        guard let url = URLComponents(string: issuer), let scheme = url.scheme, let host = url.host, !host.isEmpty,
              url.query == nil, url.fragment == nil else {
            return "'\(issuer.clipped())' is not an issuer URL (https://host[/path])"
        }
        if scheme == "https" { return nil }
        if scheme == "http", isLoopback(host) { return nil }
        return "'\(issuer.clipped())' must be https (http only on a loopback host)"
    }

    static func parseRisk(_ yaml: inout YAMLFile, _ value: Node, into config: inout Configuration, referenced: inout [(String, Node)]) {
        guard let pairs = yaml.mapping(value, "risk", what: "risk", known: ["levels", "escalation"]) else { return }
        for (k, _, v) in pairs {
            switch k {
            case "levels":
                guard let levels = yaml.mapping(v, "risk.levels", what: "risk.levels", known: []) else { continue }
                config.riskLevels = [:]
                var covered: [Int: String] = [:]
                for (name, _, scores) in levels {
                    guard case .sequence(let seq) = scores else {
                        yaml.error(scores, "risk.levels.\(name)", "must be a list of likelihood x impact scores (1, 2, 3, 4, 6, 9)")
                        continue
                    }
                    var list: [Int] = []
                    for s in seq {
                        guard let n = yaml.int(s, "risk.levels.\(name)", "risk.levels.\(name)", range: 1...9) else { continue }
                        if let other = covered[n] {
                            yaml.error(s, "risk.levels.\(name)", "score \(n) is already in level '\(other)'")
                        }
                        covered[n] = name
                        list.append(n)
                    }
                    config.riskLevels[name] = list
                }
                for score in [1, 2, 3, 4, 6, 9] where covered[score] == nil {
                    yaml.error(v, "risk.levels", "no level covers the score \(score) (every likelihood x impact product needs a level)")
                }
            case "escalation":
                guard let levels = yaml.mapping(v, "risk.escalation", what: "risk.escalation", known: []) else { continue }
                config.escalation = [:]
                for (level, _, rule) in levels {
                    let subject = "risk.escalation.\(level)"
                    guard let rp = yaml.mapping(rule, subject, what: subject, known: ["approvers", "min_approvals"]) else { continue }
                    var e = Configuration.Escalation()
                    for (rk, _, rv) in rp {
                        if rk == "approvers" {
                            e.approvers = yaml.strings(rv, subject, "approvers")
                            referenced += (e.approvers ?? []).map { ($0, rv) }
                        } else {
                            e.minApprovals = yaml.int(rv, subject, "min_approvals", range: 1...10)
                        }
                    }
                    config.escalation[level] = e
                }
            default: break
            }
        }
        for level in config.escalation.keys where config.riskLevels[level] == nil {
            yaml.error(value, "risk.escalation", "escalation for '\(level)', which is not a risk level")
        }
    }

    /// Cross-checks policies against the configuration: approver groups must exist (when groups are
    /// configured) and a policy's max_days may lower the configured cap but not raise it.
    public static func validate(_ policies: [Policy], against config: Configuration) -> [InputError] {
        var errors: [InputError] = []
        for p in policies {
            guard let rule = p.exceptions else { continue }
            let file = p.location?.file ?? "policies", line = p.location?.line
            if let days = rule.maxDays, days > config.maxDays, rule.reviewEvery == nil {
                errors.append(InputError(file: file, line: line, subject: p.id,
                    message: "exceptions.max_days \(days) is past the configured cap of \(config.maxDays) days (waiver.yaml exceptions.max_days)"))
            }
            if let level = rule.minRisk, config.riskLevels[level] == nil {
                let hint = closestMatch(to: level, in: Array(config.riskLevels.keys)).map { " (did you mean '\($0)'?)" } ?? ""
                errors.append(InputError(file: file, line: line, subject: p.id,
                    message: "exceptions.min_risk '\(level)' is not a risk level of waiver.yaml (\(config.riskLevels.sorted { ($0.value.max() ?? 0) < ($1.value.max() ?? 0) }.map(\.key).joined(separator: ", ")))\(hint)"))
            }
            if !config.groups.isEmpty {
                for g in rule.approvers ?? [] where config.groups[g] == nil {
                    let hint = closestMatch(to: g, in: Array(config.groups.keys)).map { " (did you mean '\($0)'?)" } ?? ""
                    errors.append(InputError(file: file, line: line, subject: p.id,
                        message: "exceptions.approvers names group '\(g)', which waiver.yaml does not define\(hint)"))
                }
            }
        }
        return errors
    }
}
