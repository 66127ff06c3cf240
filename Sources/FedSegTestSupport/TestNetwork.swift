import Foundation

/// Hosts for tests of what crosses a network: one network namespace for the coordinator (with a
/// bridge) and one per node, joined by veth pairs, all created by the test and removed by
/// `tearDown()`; nothing is added to the machine's own namespace. Where namespaces are not
/// permitted (no CAP_SYS_ADMIN, no iproute2) every host is loopback, and `note` says so.
public final class TestNetwork: @unchecked Sendable {
    /// True when the hosts are separate namespaces.
    public let isolated: Bool
    public let note: String
    /// The address the coordinator listens on and nodes reach it at.
    public let coordinatorHost: String
    let coordinatorNamespace: String?
    let nodeNamespaces: [String]

    static let ip = "/usr/sbin/ip"

    init(isolated: Bool, note: String, coordinatorHost: String, coordinatorNamespace: String?, nodeNamespaces: [String]) {
        self.isolated = isolated
        self.note = note
        self.coordinatorHost = coordinatorHost
        self.coordinatorNamespace = coordinatorNamespace
        self.nodeNamespaces = nodeNamespaces
    }

    /// The command prefix that runs a program on the coordinator's host (empty on loopback).
    public var coordinatorLauncher: [String] { coordinatorNamespace.map { [Self.ip, "netns", "exec", $0] } ?? [] }

    /// The command prefix that runs a program on node `index`'s host.
    public func nodeLauncher(_ index: Int) -> [String] {
        index < nodeNamespaces.count ? [Self.ip, "netns", "exec", nodeNamespaces[index]] : []
    }

    /// Builds the namespaces, or falls back to loopback saying why.
    public static func make(nodes: Int) -> TestNetwork {
        let tag = "fs\(getpid() % 100_000)"
        let coordinator = "\(tag)c"
        let nodeNames = (0..<nodes).map { "\(tag)n\($0)" }
        var commands: [[String]] = [
            ["netns", "add", coordinator],
            ["-n", coordinator, "link", "set", "lo", "up"],
            ["-n", coordinator, "link", "add", "br0", "type", "bridge"],
            ["-n", coordinator, "addr", "add", "10.231.0.1/24", "dev", "br0"],
            ["-n", coordinator, "link", "set", "br0", "up"],
        ]
        for (index, name) in nodeNames.enumerated() {
            commands += [
                ["netns", "add", name],
                ["-n", name, "link", "set", "lo", "up"],
                ["-n", coordinator, "link", "add", "vc\(index)", "type", "veth", "peer", "name", "eth0", "netns", name],
                ["-n", coordinator, "link", "set", "vc\(index)", "master", "br0"],
                ["-n", coordinator, "link", "set", "vc\(index)", "up"],
                ["-n", name, "addr", "add", "10.231.0.\(index + 2)/24", "dev", "eth0"],
                ["-n", name, "link", "set", "eth0", "up"],
            ]
        }
        for command in commands {
            if let failure = run(command) {
                remove([coordinator] + nodeNames)
                return TestNetwork(
                    isolated: false,
                    note: "network namespaces not permitted here (`ip \(command.joined(separator: " "))`: \(failure)): every host is loopback",
                    coordinatorHost: "127.0.0.1", coordinatorNamespace: nil, nodeNamespaces: []
                )
            }
        }
        return TestNetwork(
            isolated: true, note: "hosts: coordinator in namespace \(coordinator) at 10.231.0.1, nodes in \(nodeNames.joined(separator: ", "))",
            coordinatorHost: "10.231.0.1", coordinatorNamespace: coordinator, nodeNamespaces: nodeNames
        )
    }

    /// Removes the namespaces (and with them their interfaces).
    public func tearDown() {
        Self.remove((coordinatorNamespace.map { [$0] } ?? []) + nodeNamespaces)
    }

    static func remove(_ names: [String]) {
        for name in names { _ = run(["netns", "del", name]) }
    }

    /// Runs `ip` with arguments; nil on success, else why not.
    static func run(_ arguments: [String]) -> String? {
        guard FileManager.default.isExecutableFile(atPath: ip) else { return "\(ip) missing (apt-get install iproute2)" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ip)
        process.arguments = arguments
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-ip-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        guard let handle = try? FileHandle(forWritingTo: errors) else { return "cannot capture ip's output" }
        process.standardError = handle
        process.standardOutput = FileHandle.nullDevice
        do { try process.run() } catch { return "\(error)" }
        process.waitUntilExit()
        try? handle.close()
        guard process.terminationStatus == 0 else {
            return ((try? String(contentsOf: errors, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return nil
    }

    /// A self-signed certificate and key for host `names` and IP `addresses` (its SANs), PEM, via openssl.
    public static func certificate(in directory: URL, names: [String] = [], addresses: [String]) throws -> (cert: String, key: String) {
        let cert = directory.appendingPathComponent("coordinator.pem").path
        let key = directory.appendingPathComponent("coordinator-key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        openssl.arguments = [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
            "-days", "2", "-subj", "/CN=fedseg-test", "-addext", "subjectAltName=" + (names.map { "DNS:\($0)" } + addresses.map { "IP:\($0)" }).joined(separator: ","),
        ]
        openssl.standardError = FileHandle.nullDevice
        openssl.standardOutput = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        guard openssl.terminationStatus == 0 else { throw Failure.openssl }
        return (cert, key)
    }

    public enum Failure: Error, CustomStringConvertible {
        case openssl
        public var description: String { "openssl could not make the test certificate: apt-get install openssl (scripts/setup installs it)" }
    }
}
