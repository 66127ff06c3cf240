import FedSegTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A raw TCP connection to loopback, for what no HTTP client will do: send half a request head,
/// trickle a body, or watch whether the server really closes.
final class RawConnection {
    let socket: Int32

    init(port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(socket) }

    func send(_ text: String) {
        _ = text.withCString { Glibc.send(socket, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the peer closes (true) or `seconds` pass with the connection still open (false).
    func readUntilClosed(within seconds: Double) -> (closed: Bool, received: String) {
        var received = [UInt8]()
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000))) > 0 else { continue }
            let count = recv(socket, &buffer, buffer.count, 0)
            if count <= 0 { return (true, String(decoding: received, as: UTF8.self)) }
            received += buffer[0..<count]
        }
        return (false, String(decoding: received, as: UTF8.self))
    }

    /// Seconds until each connection was closed by the peer (nil: still open after `seconds`),
    /// all watched at once.
    static func closeTimes(_ connections: [RawConnection], within seconds: Double) -> [Double?] {
        let started = Date()
        var times = [Double?](repeating: nil, count: connections.count)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date().timeIntervalSince(started) < seconds, times.contains(where: { $0 == nil }) {
            var descriptors = connections.indices.filter { times[$0] == nil }.map { pollfd(fd: connections[$0].socket, events: Int16(POLLIN), revents: 0) }
            guard poll(&descriptors, nfds_t(descriptors.count), 50) > 0 else { continue }
            for descriptor in descriptors where descriptor.revents != 0 {
                guard let index = connections.firstIndex(where: { $0.socket == descriptor.fd }) else { continue }
                if recv(descriptor.fd, &buffer, buffer.count, 0) <= 0 { times[index] = Date().timeIntervalSince(started) }
            }
        }
        return times
    }
}

/// Against the real daemon (its own process, so nothing else in the test process can slow its
/// event loops): connection limits, slow clients, 413, TLS.
@Suite("Daemon connection limits and TLS", .serialized)
struct ServerLimitsTests {
    func daemon(_ limits: String, arguments: [String] = [], tls: Bool = false) throws -> RunningCoordinator {
        let coordinator = try RunningCoordinator()
        let config = coordinator.stateDirectory.appendingPathComponent("limits.toml")
        try "[limits]\n\(limits)\n".write(to: config, atomically: true, encoding: .utf8)
        try coordinator.start(arguments: ["--config", config.path] + arguments, tls: tls)
        return coordinator
    }

    @Test("200 slowloris heads are all closed (past max_connections at once, the rest at the header timeout), a trickled body at the body timeout, 413 closes its connection, and the daemon keeps serving")
    func slowClients() throws {
        let coordinator = try daemon("max_connections = 60\nheader_timeout_seconds = 1\nbody_timeout_seconds = 2")
        defer { coordinator.stop() }
        // The readiness check's keep-alive connection is closed by the header timeout first.
        Thread.sleep(forTimeInterval: 1.5)
        let slow = try (0..<200).map { _ in try RawConnection(port: coordinator.port) }
        for connection in slow { connection.send("POST /v1/enroll HTTP/1.1\r\nHost: x\r\nX-Slow: ") }
        let times = RawConnection.closeTimes(slow, within: 20)
        #expect(times.allSatisfy { $0 != nil }, "\(times.filter { $0 == nil }.count) slow connections held for 20 s")
        let closed = times.compactMap { $0 }.sorted()
        // 140 are past the limit of 60: closed at once. The 60 admitted wait for the 1 s timeout.
        #expect(closed.count == 200 && closed[139] < 0.9 && closed[140] >= 0.9, "\(closed.first ?? -1) ... \(closed.last ?? -1)")
        #expect(try RunningCoordinator.get(coordinator.url + "/healthz") == "ok\n")

        // A body that trickles a byte every 0.4 s is never idle; the body timeout ends it.
        let trickle = try RawConnection(port: coordinator.port)
        trickle.send("POST /v1/rounds/1/updates HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        let started = Date()
        var ended = false
        while !ended, Date().timeIntervalSince(started) < 10 {
            trickle.send("x")
            ended = trickle.readUntilClosed(within: 0.4).closed
        }
        #expect(ended, "a trickled body was held past the body timeout")
        #expect(Date().timeIntervalSince(started) >= 1.8)

        // A declared body over the limit: 413, then the connection is closed whatever still comes.
        let oversized = try RawConnection(port: coordinator.port)
        oversized.send("POST /v1/rounds/1/updates HTTP/1.1\r\nHost: x\r\nContent-Length: \(17 << 20)\r\n\r\nabc")
        let answer = oversized.readUntilClosed(within: 5)
        #expect(answer.received.hasPrefix("HTTP/1.1 413"), "\(answer.received.prefix(80))")
        #expect(answer.closed, "413 must close the connection")
        #expect(coordinator.log().contains("max_connections=60"))
    }

    @Test("TLS: fedseg reaches an https coordinator with --ca-cert and is refused, with the fix named, without it; plain HTTP beyond loopback is refused unless --insecure-http")
    func tls() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (cert, key) = try TestNetwork.certificate(in: directory, names: ["localhost"], addresses: ["127.0.0.1"])

        let coordinator = try daemon("max_connections = 100", arguments: ["--tls-cert", cert, "--tls-key", key], tls: true)
        defer { coordinator.stop() }
        let https = "https://localhost:\(coordinator.port)"
        let trusted = try Executables.run("fedseg", ["clients", "list", "--coordinator", https, "--admin-token-file", coordinator.adminTokenFile, "--ca-cert", cert, "--json"])
        #expect(trusted.status == 0 && trusted.stdout.hasPrefix("["), "\(trusted.stderr)")
        let untrusted = try Executables.run("fedseg", ["clients", "list", "--coordinator", https, "--admin-token-file", coordinator.adminTokenFile])
        #expect(untrusted.status == 1 && untrusted.stderr.contains("--ca-cert"), "\(untrusted.stderr)")
        // Plain HTTP to the TLS port gets nothing useful.
        #expect((try? RunningCoordinator.get("http://127.0.0.1:\(coordinator.port)/healthz")) != "ok\n")

        let exposed = try RunningCoordinator()
        let refused = try Executables.run("coordinator", ["serve", "--state-dir", exposed.stateDirectory.path, "--host", "0.0.0.0", "--port", "0"])
        #expect(refused.status == 1 && refused.stderr.contains("--tls-cert") && refused.stderr.contains("--insecure-http"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("Usage:"))
        let badKey = try Executables.run("coordinator", ["serve", "--state-dir", exposed.stateDirectory.path, "--port", "0", "--tls-cert", cert, "--tls-key", cert])
        #expect(badKey.status == 1 && badKey.stderr.contains("--tls-key"), "\(badKey.stderr)")
    }
}
