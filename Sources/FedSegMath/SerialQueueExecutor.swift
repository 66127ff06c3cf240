import Dispatch

/// An actor's executor that is its own serial dispatch queue. The actors that use it (a client
/// node, the coordinator's state machine) block on storage: every commit waits for an fsync. On
/// the cooperative pool, which has one thread per core, a blocked actor stalls every other task
/// of the process; on its own queue it blocks a dispatch thread, and the rest goes on (in the
/// simulator, the other nodes and the coordinator). Jobs keep the actor's order: the queue is
/// serial.
public final class SerialQueueExecutor: SerialExecutor {
    private let queue: DispatchQueue

    public init(label: String) {
        queue = DispatchQueue(label: label)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }
}
