import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive lock on a coordinator state directory (`flock` on `coordinator.lock`), held by
/// the daemon for its whole life and by CLI commands while they write, so two processes never
/// drive the same rounds. The file holds the holder's pid, for the refusal message. The kernel
/// drops the lock when the holder exits, however it exits.
public final class StateLock: Sendable {
    public static let fileName = "coordinator.lock"
    let descriptor: Int32
    public let path: String

    /// Takes the lock or throws, naming the process that holds it.
    public init(stateDirectory: String, purpose: String) throws {
        path = URL(fileURLWithPath: stateDirectory).appendingPathComponent(Self.fileName).path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CoordinatorError.state("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw CoordinatorError.state(
                "\(stateDirectory) is in use by another process (\(holder.isEmpty ? "pid unknown" : holder)); stop it first, or use another --state-dir"
            )
        }
        let line = "pid \(getpid()): \(purpose)\n"
        _ = ftruncate(fd, 0)
        _ = line.withCString { pwrite(fd, $0, strlen($0), 0) }
        descriptor = fd
    }

    deinit {
        _ = ftruncate(descriptor, 0)
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}

extension CoordinatorDaemon {
    /// Checks that `stateDirectory` was made by `coordinator init`: nothing but `init` creates
    /// one, so a mistyped path is an error rather than a fresh, empty state.
    public static func requireInitialised(_ stateDirectory: String) throws {
        let keyPath = URL(fileURLWithPath: stateDirectory).appendingPathComponent(keyFile).path
        guard FileManager.default.fileExists(atPath: keyPath) else {
            throw CoordinatorError.state(
                "\(stateDirectory) is not a coordinator state directory (no \(keyFile)): check the path, or create one with `coordinator init --state-dir \(stateDirectory)`"
            )
        }
    }
}
