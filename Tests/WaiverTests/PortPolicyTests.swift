import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

/// Issue 14, item 15: the debug-port case — any port outside an allowed list open to the internet —
/// with the `ports_outside` operator it needs (ranges that overlap the list), on AWS security groups
/// and their rules, Azure NSGs and GCP firewalls.
@Suite("Open ports outside the allowed list")
struct PortPolicyTests {
    @Test func portRangesAreComparedWithTheAllowedList() {
        let web: [ClosedRange<Int>] = [80...80, 443...443]
        #expect(!PortSpec.outside([443...443], allowed: web))
        #expect(PortSpec.outside([80...443], allowed: web), "a range spanning the list opens the ports between")
        #expect(!PortSpec.outside([8000...8080], allowed: [8000...8040, 8041...8080]), "adjacent allowed ranges cover it")
        #expect(PortSpec.outside([8000...8080], allowed: [8000...8040, 8042...8080]), "8041 is outside")
        #expect(PortSpec.outside([0...65_535], allowed: web))
        #expect(PortSpec.ranges(.string("5985-5986")) == [5985...5986] && PortSpec.ranges(.string("*")) == [0...65_535])
        #expect(PortSpec.ranges(.string("80-")) == nil && PortSpec.ranges(.string("90-80")) == nil && PortSpec.ranges(.number(70_000)) == nil)
        // AWS: protocol -1 opens every port; icmp's -1 opens none.
        let all: Value = .object(Value.Object([("protocol", "-1"), ("from_port", 0), ("to_port", 0)]))
        #expect(PortSpec.ranges(all) == [0...65_535])
        let icmp: Value = .object(Value.Object([("protocol", "icmp"), ("from_port", -1), ("to_port", -1)]))
        #expect(PortSpec.ranges(icmp) == [])
        // GCP: an allow block without ports opens every port of its protocol.
        #expect(PortSpec.ranges(.object(Value.Object([("protocol", "tcp")]))) == [0...65_535])
        #expect(PortSpec.ranges(.object(Value.Object([("protocol", "tcp"), ("ports", ["443", "8443"])]))) == [443...443, 8443...8443])
    }

    static let plan = planJSON([
        // AWS, inline: a JVM debugger open to the world; the web SG only 443; a restricted 5005.
        change("aws_security_group.debug", after: #"{"name":"debug","ingress":[{"cidr_blocks":["0.0.0.0/0"],"ipv6_cidr_blocks":[],"protocol":"tcp","from_port":5005,"to_port":5005}]}"#),
        change("aws_security_group.web", after: #"{"name":"web","ingress":[{"cidr_blocks":["0.0.0.0/0"],"ipv6_cidr_blocks":[],"protocol":"tcp","from_port":443,"to_port":443}]}"#),
        change("aws_security_group.vpn", after: #"{"name":"vpn","ingress":[{"cidr_blocks":["10.8.0.0/16"],"ipv6_cidr_blocks":[],"protocol":"tcp","from_port":5005,"to_port":5005}]}"#),
        // AWS, separate rules: all traffic from ::/0; 80-443 (every port between); an id known after apply does not matter.
        change("aws_security_group_rule.all", after: #"{"type":"ingress","cidr_blocks":[],"ipv6_cidr_blocks":["::/0"],"protocol":"-1","from_port":0,"to_port":0}"#,
               unknown: #"{"id":true}"#),
        change("aws_security_group_rule.span", after: #"{"type":"ingress","cidr_blocks":["0.0.0.0/0"],"protocol":"tcp","from_port":80,"to_port":443}"#),
        change("aws_security_group_rule.egress", after: #"{"type":"egress","cidr_blocks":["0.0.0.0/0"],"protocol":"-1","from_port":0,"to_port":0}"#),
        change("aws_vpc_security_group_ingress_rule.node", after: #"{"cidr_ipv4":"0.0.0.0/0","ip_protocol":"tcp","from_port":9229,"to_port":9229}"#),
        change("aws_vpc_security_group_ingress_rule.https", after: #"{"cidr_ipv4":"0.0.0.0/0","ip_protocol":"tcp","from_port":443,"to_port":443}"#),
        // Azure: WinRM in a list of ranges; a web-only rule.
        change("azurerm_network_security_rule.winrm", after: #"{"access":"Allow","direction":"Inbound","source_address_prefix":"*","destination_port_range":null,"destination_port_ranges":["443","5985-5986"]}"#),
        change("azurerm_network_security_rule.web", after: #"{"access":"Allow","direction":"Inbound","source_address_prefix":"Internet","destination_port_range":"443","destination_port_ranges":[]}"#),
        change("azurerm_network_security_group.db", after: #"{"security_rule":[{"access":"Allow","direction":"Inbound","source_address_prefix":"0.0.0.0/0","destination_port_range":"5432","destination_port_ranges":[]}]}"#),
        // GCP: an allow block without ports (every port); one for 443 only.
        change("google_compute_firewall.open", after: #"{"direction":"INGRESS","disabled":false,"source_ranges":["0.0.0.0/0"],"allow":[{"protocol":"tcp","ports":[]}]}"#),
        change("google_compute_firewall.https", after: #"{"direction":"INGRESS","disabled":false,"source_ranges":["0.0.0.0/0"],"allow":[{"protocol":"tcp","ports":["443"]}]}"#),
    ])

    @Test func theStarterPolicyFindsEveryDebugPortAndNothingElse() throws {
        let policies = try PolicyLoader.load(directory: repoRoot + "/policies").filter { $0.id == "NET-006" }
        #expect(policies.count == 1)
        let plan = try PlanReader.parse(Data(Self.plan.utf8), file: "plan.json", selection: AttributeSelection(policies: policies))
        let report = CheckEngine(policies: policies).check(resources: plan.resources.map { ($0, file: "plan.json") }, external: [], workspace: "w")
        let flagged = report.findings.map { "\($0.resource):\($0.status.rawValue)" }.sorted()
        #expect(flagged == ["aws_security_group.debug:blocking", "aws_security_group_rule.all:blocking", "aws_security_group_rule.span:blocking",
                            "aws_vpc_security_group_ingress_rule.node:blocking", "azurerm_network_security_group.db:blocking",
                            "azurerm_network_security_rule.winrm:blocking", "google_compute_firewall.open:blocking"], "\(report.findings.map(\.message))")
        let winrm = try #require(report.findings.first { $0.resource == "azurerm_network_security_rule.winrm" })
        #expect(winrm.message.contains(#"destination_port_ranges = ["443", "5985-5986"] (opens a port outside [80, 443, 22, 3389])"#), "\(winrm.message)")
    }

    @Test func theOperatorIsCheckedWhenLoaded() {
        let errors = policyErrors([("p.yaml", """
            policies:
              - id: P-1
                title: t
                forbid: { path: "@", ports_outside: [80, "x-y"] }
            """)])
        #expect(errors.contains { $0.message.contains("'ports_outside' takes ports (0-65535) and ranges like \"8000-8080\"") }, "\(errors)")
    }
}
