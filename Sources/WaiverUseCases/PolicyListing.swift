import Foundation
import WaiverCore
import WaiverFormats

/// `waiver policies list`: what is loaded, as the register applies it — each policy's enforcement
/// and the exception rules in force (the longest duration, who approves at the policy's lowest
/// risk, the risk floor), and the file it comes from.
public enum PolicyListing {
    public struct Row: Sendable, Equatable {
        public var id, title, severity, category, enforcement, kind: String
        public var maxDays: Int
        public var approvers: [String]
        public var minApprovals: Int
        public var riskFloor: String?
        public var controls: [String]
        public var source: String
    }

    public static func rows(_ policies: [Policy], register: Register, directory: String?) -> [Row] {
        policies.sorted { $0.id < $1.id }.map { p in
            let floor = register.riskFloor(for: p)
            let rule = register.approvalRule(for: p, level: floor ?? register.riskOrder.first ?? "low")
            let kind: String
            switch p.rule {
            case .external: kind = "sarif"
            case .control: kind = "control"
            default: kind = "plan"
            }
            return Row(id: p.id, title: p.title, severity: p.severity.rawValue, category: p.category, enforcement: p.enforcement.rawValue,
                       kind: kind, maxDays: register.maxDays(for: p), approvers: rule.groups, minApprovals: rule.minApprovals, riskFloor: floor,
                       controls: p.controls, source: p.location.map { relative($0, to: directory) } ?? "")
        }
    }

    /// A policy's file and line relative to the policy folder.
    public static func relative(_ location: SourceLocation, to directory: String?) -> String {
        let file = (location.file as NSString).standardizingPath
        if let directory {
            let dir = (directory as NSString).standardizingPath
            let prefix = dir.hasSuffix("/") ? dir : dir + "/"
            if file.hasPrefix(prefix) { return "\(file.dropFirst(prefix.count)):\(location.line)" }
        }
        return "\((file as NSString).lastPathComponent):\(location.line)"
    }

    public static func text(_ rows: [Row]) -> String {
        if rows.isEmpty { return "No policies loaded.\n" }
        let header = ["ID", "SEVERITY", "CATEGORY", "ENFORCEMENT", "EXCEPTIONS", "SOURCE", "TITLE"]
        let table = rows.map { r in
            [r.id, r.severity, r.category, r.enforcement,
             r.enforcement == "advisory" ? "none needed" : "≤\(r.maxDays)d, \(r.minApprovals) of \(r.approvers.joined(separator: "/"))\(r.riskFloor.map { ", ≥\($0) risk" } ?? "")",
             r.source, r.title]
        }
        var widths = header.map(\.count)
        for row in table { for (i, cell) in row.enumerated() where i < widths.count - 1 { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + table.map(line)).joined(separator: "\n") + "\n\(rows.count) polic\(rows.count == 1 ? "y" : "ies")\n"
    }

    public static func value(_ rows: [Row]) -> Value {
        .array(rows.map { r in
            var o = Value.Object([("id", .string(r.id)), ("title", .string(r.title)), ("severity", .string(r.severity)), ("category", .string(r.category)),
                                  ("enforcement", .string(r.enforcement)), ("source", .string(r.kind)), ("file", .string(r.source))])
            o.append("exceptions", .object(Value.Object([
                ("max_days", .number(Double(r.maxDays))), ("approvers", .array(r.approvers.map(Value.string))),
                ("min_approvals", .number(Double(r.minApprovals))), ("min_risk", r.riskFloor.map(Value.string) ?? .null),
            ])))
            o.append("controls", .array(r.controls.map(Value.string)))
            return .object(o)
        })
    }
}
