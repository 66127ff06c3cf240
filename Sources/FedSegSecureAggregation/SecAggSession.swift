import FedSegMath
import Foundation

/// One secure-aggregation round run in one process, message by message, for simulations,
/// tests and benchmarks: the same client and server objects a networked deployment uses, with
/// the transport replaced by function calls and dropouts injected between the protocol's rounds.
public enum SecAggSession {
    public struct Dropouts: Sendable {
        /// Never advertise keys.
        public var beforeAdvertising: Set<Int> = []
        /// Advertise, then vanish before sharing keys.
        public var beforeSharing: Set<Int> = []
        /// Share keys, then vanish before sending their masked vector (the case SecAgg exists for).
        public var beforeMasking: Set<Int> = []
        /// Send their vector, then vanish before revealing shares.
        public var beforeUnmasking: Set<Int> = []

        public init() {}

        /// `fraction` of the clients, chosen with `seed`, drop before masking.
        public static func random(fraction: Double, clients: Int, seed: UInt64) -> Dropouts {
            var rng = SeededRandom(seed: seed, stream: 0xD0)
            var order = Array(0..<clients)
            order.shuffle(using: &rng)
            var dropouts = Dropouts()
            dropouts.beforeMasking = Set(order.prefix(Int((Double(clients) * fraction).rounded())))
            return dropouts
        }
    }

    public struct Outcome: Sendable {
        public var sum: [UInt32]
        public var survivors: Set<Int>
        /// Seconds of all clients' work added up (each client timed on its own), and the server's.
        public var clientSeconds: Double
        /// CPU seconds of all clients' work added up (the CPU time of the thread each piece of
        /// client work ran on), which other load on the machine disturbs less than wall time.
        public var clientCPUSeconds: Double
        public var serverSeconds: Double
        /// CPU seconds of the server's work (it runs on one thread).
        public var serverCPUSeconds: Double
    }

    /// Runs the four rounds. `input(i)` is client i's vector (length `parameters.length`).
    public static func run(
        parameters p: SecAgg.Parameters, input: @Sendable (Int) -> [UInt32], dropouts: Dropouts = Dropouts()
    ) throws -> Outcome {
        let graph = NeighborGraph(clients: p.clients, degree: p.degree, seed: p.graphSeed)
        let clock = ContinuousClock()
        let clientTime = TimeAccount()
        var serverTime = Duration.zero
        var serverCPU = 0.0
        func serverWork<T>(_ body: () throws -> T) rethrows -> T {
            let start = clock.now
            let startCPU = threadCPUSeconds()
            defer {
                serverTime += clock.now - start
                serverCPU += threadCPUSeconds() - startCPU
            }
            return try body()
        }
        // Each client's work is timed on its own (clients run on all cores, like real devices in parallel).
        @Sendable func clientWork<T>(_ body: () throws -> T) rethrows -> T {
            let start = ContinuousClock.now
            let startCPU = threadCPUSeconds()
            defer { clientTime.add(ContinuousClock.now - start, cpu: threadCPUSeconds() - startCPU) }
            return try body()
        }
        var server = SecAggServer(parameters: p)
        let clients = try parallelMap(Array(0..<p.clients)) { index in try clientWork { try SecAggClient(index: index, parameters: p, graph: graph) } }

        // Round 0: advertise keys.
        for client in clients where !dropouts.beforeAdvertising.contains(client.index) {
            let advertisement = clientWork { client.advertise() }
            serverWork { server.receive(advertisement) }
        }
        let directory = server.directory
        // Round 1: share keys (sealed per neighbour), routed by the server.
        let sharing = clients.filter { directory[$0.index] != nil && !dropouts.beforeSharing.contains($0.index) }
        let batches = try parallelMap(sharing) { client in try clientWork { try client.shareKeys(directory) } }
        let inbox = serverWork { server.route(batches) }
        // Round 2: masked inputs, summed by the server as they arrive.
        let masking = sharing.filter { !dropouts.beforeMasking.contains($0.index) }
        let masked = try parallelMap(masking) { client in
            let vector = input(client.index)
            return (client.index, try clientWork { try client.maskedInput(vector, shares: inbox[client.index] ?? [], directory: directory) })
        }
        try serverWork { for (index, vector) in masked { try server.receiveMasked(from: index, vector) } }
        // Round 3: survivors announced; surviving neighbours reveal one share per client.
        let survivors = try serverWork { try server.survivorsToAnnounce() }
        let revealing = masking.filter { !dropouts.beforeUnmasking.contains($0.index) }
        let reveals = try revealing.flatMap { client in try clientWork { try client.unmask(survivors: survivors) } }
        let sum = try serverWork { try server.unmask(reveals, graph: graph) }
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        return Outcome(
            sum: sum, survivors: survivors, clientSeconds: seconds(clientTime.total), clientCPUSeconds: clientTime.cpu,
            serverSeconds: seconds(serverTime), serverCPUSeconds: serverCPU
        )
    }

    /// Map over all cores (clients are independent); order preserved.
    static func parallelMap<T, R: Sendable>(_ items: [T], _ body: @Sendable (T) throws -> R) throws -> [R] where T: Sendable {
        let results = ResultSlots<R>(count: items.count)
        let workers = min(Parallel.workerCount, max(1, items.count))
        Parallel.run(workers: workers) { worker in
            var i = worker
            while i < items.count {
                results.set(i, Result { try body(items[i]) })
                i += workers
            }
        }
        return try results.values.map { try $0!.get() }
    }
}

/// CPU time of the calling thread.
func threadCPUSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) * 1e-9
}

final class TimeAccount: @unchecked Sendable {
    private var sum = Duration.zero
    private var cpuSum = 0.0
    private let lock = NSLock()

    func add(_ duration: Duration, cpu: Double) {
        lock.lock()
        sum += duration
        cpuSum += cpu
        lock.unlock()
    }

    var cpu: Double {
        lock.lock()
        defer { lock.unlock() }
        return cpuSum
    }

    var total: Duration {
        lock.lock()
        defer { lock.unlock() }
        return sum
    }
}

/// Write-once slots filled from several workers, each slot by exactly one.
final class ResultSlots<R: Sendable>: @unchecked Sendable {
    private(set) var values: [Result<R, any Error>?]
    private let lock = NSLock()

    init(count: Int) { values = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ value: Result<R, any Error>) {
        lock.lock()
        values[index] = value
        lock.unlock()
    }
}
