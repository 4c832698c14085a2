import Foundation
import WaiverCore
import WaiverFormats

/// `waiver policies test`: runs the test cases kept beside the policies through the check engine
/// (the same evaluation a pipeline gets) and says, per case, what each policy gave against what was
/// expected.
public enum PolicyTesting {
    public struct Result: Sendable, Equatable {
        public var testCase: PolicyTestCase
        /// One line per expectation that did not hold; empty when the case passed.
        public var failures: [String]
        public var passed: Bool { failures.isEmpty }
    }

    public static func run(_ cases: [PolicyTestCase], policies: [Policy]) -> [Result] {
        let byId = Dictionary(policies.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return cases.map { c in
            var failures: [String] = []
            let named = c.expect.compactMap { byId[$0.policy] }
            for (id, _) in c.expect where byId[id] == nil {
                failures.append("\(id): no such policy\(closestMatch(to: id, in: Array(byId.keys)).map { " (did you mean '\($0)'?)" } ?? "")")
            }
            let resources: [Resource]
            do {
                resources = try PlanReader.parse(Data(c.planJSON.utf8), file: c.location.file).resources
            } catch {
                return Result(testCase: c, failures: failures + ["the resource could not be read: \(error)"])
            }
            let report = CheckEngine(policies: named, keepCompliant: true)
                .check(resources: resources.map { ($0, file: c.location.file) }, external: [], workspace: "test")
            for (id, expected) in c.expect {
                guard let policy = byId[id] else { continue }
                guard policy.applies(toType: c.type) else {
                    failures.append("\(id): does not apply to \(c.type) (its resource_types)")
                    continue
                }
                let finding = report.findings.first { $0.policy == id }
                let got: PolicyTestCase.Outcome
                switch finding?.status {
                case .unknown?: got = .unknown
                case nil: got = .compliant
                default: got = .violated
                }
                if got != expected {
                    failures.append("\(id): expected \(expected.rawValue), got \(got.rawValue)\(finding.map { " (\($0.message))" } ?? "")")
                }
            }
            return Result(testCase: c, failures: failures)
        }
    }

    /// The report: a line per case (`ok` or `FAIL` with why), then the tally and the plan policies
    /// no case covers.
    public static func text(_ results: [Result], policies: [Policy], directory: String?) -> String {
        var out = ""
        for r in results {
            let at = PolicyListing.relative(r.testCase.location, to: directory)
            out += "\(r.passed ? "ok  " : "FAIL") \(at)  \(r.testCase.name)\n"
            for f in r.failures { out += "       \(f)\n" }
        }
        let failed = results.filter { !$0.passed }.count
        let covered = Set(results.flatMap { $0.testCase.expect.map(\.policy) })
        let untested = policies.filter { if case .forbid = $0.rule { return true }; if case .require = $0.rule { return true }; return false }
            .map(\.id).filter { !covered.contains($0) }.sorted()
        out += "\(results.count) case\(results.count == 1 ? "" : "s"), \(failed) failed"
        out += untested.isEmpty ? "; every plan policy has a case\n" : "; no case for \(untested.joined(separator: ", "))\n"
        return out
    }
}
