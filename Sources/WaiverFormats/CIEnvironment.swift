import Foundation
import WaiverCore

/// What a CI system's own variables say about the change being checked: the commit, the pipeline
/// run, the pull or merge request and (where the CI names one) the commit author. `waiver check`
/// records them with the requests it files, so an approver sees where a request came from; flags
/// given on the command line win. Each system is recognised by the variable it always sets.
public struct CIEnvironment: Sendable, Equatable {
    public var system: String
    public var commit: String?
    public var runURL: String?
    public var changeURL: String?
    public var commitAuthor: String?

    /// Whether this runs in a CI system: `CI` set to anything but false or 0 (every major CI sets it), or a system `detect` knows.
    public static func isCI(_ env: [String: String]) -> Bool {
        if let ci = env["CI"]?.lowercased(), !ci.isEmpty, ci != "false", ci != "0" { return true }
        return detect(env) != nil
    }

    public static func detect(_ env: [String: String]) -> CIEnvironment? {
        func v(_ key: String) -> String? { env[key]?.trimmingCharacters(in: .whitespaces).nilIfEmpty }
        if env["GITHUB_ACTIONS"] == "true" {
            // https://docs.github.com/actions/reference/variables-reference
            let server = v("GITHUB_SERVER_URL") ?? "https://github.com"
            var ci = CIEnvironment(system: "GitHub Actions", commit: v("GITHUB_SHA"))
            if let repo = v("GITHUB_REPOSITORY") {
                if let run = v("GITHUB_RUN_ID") { ci.runURL = "\(server)/\(repo)/actions/runs/\(run)" }
                // A pull request's run checks refs/pull/N/merge.
                if let ref = v("GITHUB_REF"), ref.hasPrefix("refs/pull/") {
                    let n = ref.dropFirst("refs/pull/".count).prefix { $0.isNumber }
                    if !n.isEmpty { ci.changeURL = "\(server)/\(repo)/pull/\(n)" }
                }
            }
            return ci
        }
        if env["GITLAB_CI"] == "true" {
            // https://docs.gitlab.com/ci/variables/predefined_variables/
            var ci = CIEnvironment(system: "GitLab CI", commit: v("CI_COMMIT_SHA"), runURL: v("CI_PIPELINE_URL"), commitAuthor: v("CI_COMMIT_AUTHOR"))
            if let project = v("CI_PROJECT_URL"), let iid = v("CI_MERGE_REQUEST_IID") { ci.changeURL = "\(project)/-/merge_requests/\(iid)" }
            return ci
        }
        if v("JENKINS_URL") != nil {
            // Jenkins' git plugin and multibranch pipelines (CHANGE_* for pull requests).
            return CIEnvironment(system: "Jenkins", commit: v("GIT_COMMIT"), runURL: v("BUILD_URL"), changeURL: v("CHANGE_URL"),
                                 commitAuthor: v("CHANGE_AUTHOR_EMAIL") ?? v("CHANGE_AUTHOR"))
        }
        if v("TFC_RUN_ID") != nil {
            // HCP Terraform / Terraform Enterprise runs (agents and custom run environments).
            return CIEnvironment(system: "HCP Terraform", commit: v("TFC_CONFIGURATION_VERSION_GIT_COMMIT_SHA"))
        }
        return nil
    }
}
