import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive lock on a state directory (`flock` on a lock file in it): the coordinator's
/// (`coordinator.lock`), held by the daemon for its whole life and by CLI commands while they
/// write, so two processes never drive the same rounds; and a node's (`node.lock`), held by
/// `fedseg-node serve`, so two processes never answer for the same users. The file holds the
/// holder's pid, for the refusal message. The kernel drops the lock when the holder exits,
/// however it exits.
public final class StateLock: Sendable {
    public static let coordinatorFile = "coordinator.lock"
    public static let nodeFile = "node.lock"
    let descriptor: Int32
    public let path: String

    public enum Failure: Error, CustomStringConvertible {
        case busy(stateDirectory: String, holder: String)
        case unopenable(path: String, reason: String)

        public var description: String {
            switch self {
            case .busy(let directory, let holder):
                "\(directory) is in use by another process (\(holder.isEmpty ? "pid unknown" : holder)); stop it first, or use another --state-dir"
            case .unopenable(let path, let reason): "cannot open \(path): \(reason)"
            }
        }
    }

    /// Takes the lock or throws, naming the process that holds it.
    public init(stateDirectory: String, fileName: String, purpose: String) throws(Failure) {
        path = URL(fileURLWithPath: stateDirectory).appendingPathComponent(fileName).path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .unopenable(path: path, reason: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw .busy(stateDirectory: stateDirectory, holder: holder)
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
