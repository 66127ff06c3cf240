import Dispatch

/// The executor a `ClientNode` runs on: its own serial dispatch queue. A node's work blocks on
/// storage (every charge waits for an fsync before its envelope may leave), and on the
/// cooperative pool, which has one thread per core, a blocked node stalls every other task of the
/// process; on its own queue it blocks a dispatch thread, and the other nodes of a simulator (or
/// the HTTP client) go on. Jobs keep the actor's order: the queue is serial.
final class NodeExecutor: SerialExecutor {
    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }
}
