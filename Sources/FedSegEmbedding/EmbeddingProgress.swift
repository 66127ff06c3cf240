import FedSegMath
import Foundation
import Synchronization

extension Embedder {
    /// `embed(texts)` in chunks of `chunk` texts, calling `progress(done, total)` after each, so
    /// that a long job can say how far it is. Within a chunk the embedder batches as usual; the
    /// result is the same as one call (row for row).
    public func embed(_ texts: [String], chunk: Int, progress: (Int, Int) -> Void) throws -> Matrix {
        guard texts.count > chunk else {
            let vectors = try embed(texts)
            progress(texts.count, texts.count)
            return vectors
        }
        var result = Matrix(rows: texts.count, cols: dimension)
        var done = 0
        while done < texts.count {
            let end = min(texts.count, done + max(1, chunk))
            let vectors = try embed(Array(texts[done..<end]))
            result.storage.withUnsafeMutableBufferPointer { target in
                vectors.storage.withUnsafeBufferPointer { source in
                    (target.baseAddress! + done * dimension).update(from: source.baseAddress!, count: source.count)
                }
            }
            done = end
            progress(done, texts.count)
        }
        return result
    }
}

/// One line of progress on a terminal (`embedding items: 4,096 / 10,000 (812/s, 7 s left)`),
/// redrawn in place at most five times a second and finished with a newline. Silent when
/// standard error is not a terminal (logs and pipes stay clean) or when the command was given
/// `--quiet`.
public final class ProgressLine: Sendable {
    private struct State {
        var lastDraw: Double = -1
        var drawn = false
    }

    let label: String
    let enabled: Bool
    let started: Double
    let write: @Sendable (String) -> Void
    private let state = Mutex(State())

    /// Whether progress lines are shown on this process's standard error.
    public static var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    public init(
        _ label: String, quiet: Bool = false, enabled: Bool = ProgressLine.standardErrorIsTerminal,
        write: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
    ) {
        self.label = label
        self.enabled = enabled && !quiet
        self.started = Self.now()
        self.write = write
    }

    static func now() -> Double { ProcessInfo.processInfo.systemUptime }

    /// Redraws the line with `done` of `total` items; the last call (done == total) ends it.
    public func update(_ done: Int, of total: Int) {
        guard enabled else { return }
        let now = Self.now()
        let finished = done >= total
        let line: String? = state.withLock { state in
            guard finished || now - state.lastDraw >= 0.2 else { return nil }
            state.lastDraw = now
            state.drawn = true
            return Self.text(label: label, done: done, total: total, elapsed: now - started)
        }
        guard let line else { return }
        write("\r\u{1B}[K" + line + (finished ? "\n" : ""))
    }

    /// `label: done / total (rate/s, N s left)`; the rate and time left once there is a rate.
    public static func text(label: String, done: Int, total: Int, elapsed: Double) -> String {
        let count = "\(label): \(done) / \(total)"
        guard elapsed > 0, done > 0 else { return count }
        let rate = Double(done) / elapsed
        if done >= total { return count + String(format: " (%.0f/s, %.1f s)", rate, elapsed) }
        let left = Double(total - done) / rate
        return count + String(format: " (%.0f/s, %.0f s left)", rate, left.rounded(.up))
    }
}
