import ArgumentParser
import FedSegMath
import Foundation

struct GEMMSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "SGEMM GFLOP/s on the kernel in use, the library's own pick, and Prescott."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, parsing: .upToNextOption, help: "Square sizes.")
    var sizes: [Int] = [384, 1024, 2048]

    @Flag(name: .long, help: "Measure only this process's kernel (used for the comparison runs).")
    var noCompare = false

    struct Row: Codable {
        var n: Int
        var seconds: Double
        var gflops: Double
    }

    struct KernelRun: Codable {
        var core: String
        var libraryDetectedCore: String
        var selectedByFedseg: Bool
        var threads: Int
        var workers: Int
        var rows: [Row]
    }

    struct Output: Codable {
        var suite = "gemm"
        var selected: KernelRun
        var libraryPick: KernelRun?
        var prescott: KernelRun?
        var speedupVsPrescottN1024: Double?
        var speedupVsLibraryPickN1024: Double?
    }

    func measure() -> KernelRun {
        var rng = SeededRandom(seed: 1)
        var rows: [Row] = []
        for n in sizes {
            let a = rng.normalMatrix(rows: n, cols: n)
            let b = rng.normalMatrix(rows: n, cols: n)
            var c = Matrix(rows: n, cols: n)
            let budget = n >= 2048 ? 1.5 : 0.5
            let seconds = medianSeconds(budget: budget) { BLAS.parallelGemm(a, b, into: &c) }
            rows.append(Row(n: n, seconds: seconds, gflops: 2 * pow(Double(n), 3) / seconds / 1e9))
        }
        let report = BLASKernel.report()
        return KernelRun(
            core: report.core, libraryDetectedCore: report.libraryDetectedCore,
            selectedByFedseg: report.selectedByFedSeg, threads: report.threads, workers: Parallel.workerCount, rows: rows
        )
    }

    func run() throws {
        let selected = measure()
        var output = Output(selected: selected)
        if !noCompare {
            let child = ["gemm", "--json", "--no-compare", "--sizes"] + sizes.map(String.init)
            output.libraryPick = try runChild(Output.self, arguments: child, environment: ["FEDSEG_BLAS_KERNEL": "off"]).selected
            output.prescott = try runChild(Output.self, arguments: child, environment: ["OPENBLAS_CORETYPE": "Prescott"]).selected
            func gflops(_ run: KernelRun?) -> Double? { run?.rows.first { $0.n == 1024 }?.gflops }
            if let ours = gflops(selected) {
                output.speedupVsPrescottN1024 = gflops(output.prescott).map { ours / $0 }
                output.speedupVsLibraryPickN1024 = gflops(output.libraryPick).map { ours / $0 }
            }
        }
        if json {
            try printJSON(output)
            return
        }
        print("kernel in use: \(selected.core) (library picked \(selected.libraryDetectedCore)); rows split over \(selected.workers) workers, \(selected.threads) OpenBLAS thread(s) per call")
        print("kernel      n      ms     GFLOP/s")
        for run in [("selected", selected), ("library", output.libraryPick), ("prescott", output.prescott)] {
            guard let kernel = run.1 else { continue }
            for row in kernel.rows {
                print(
                    run.0.padding(toLength: 10, withPad: " ", startingAt: 0)
                        + String(format: "%5d %8.2f %10.1f   (%@)", row.n, row.seconds * 1000, row.gflops, kernel.core)
                )
            }
        }
        if let speedup = output.speedupVsPrescottN1024 {
            print(String(format: "n=1024: %.1fx the Prescott kernel", speedup))
        }
    }
}
