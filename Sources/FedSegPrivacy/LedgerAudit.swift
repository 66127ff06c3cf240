import Foundation

/// Verifies a ledger without trusting anything stored about totals: the hash chain, every
/// record's own hash, the sequence (deleted or reordered records), the head, and every ε
/// recomputed from the recorded mechanism parameters.
public struct LedgerAudit: Sendable, Codable {
    public struct Problem: Sendable, Codable, Equatable {
        public var sequence: Int64?
        public var reason: String
    }

    public struct Point: Sendable, Codable, Equatable {
        public var sequence: Int64
        public var round: Int64
        public var releaseID: String
        public var mode: String
        public var epsilon: Double

        enum CodingKeys: String, CodingKey {
            case sequence, round, mode, epsilon
            case releaseID = "release_id"
        }
    }

    public struct Population: Sendable, Codable, Equatable {
        public var population: String
        public var releases: Int
        public var epsilonSpent: Double
        public var epsilonBudget: Double?
        public var epsilonLeft: Double?
        public var delta: Double?
        /// ε after each of this population's releases, in order (recomputed).
        public var series: [Point]

        enum CodingKeys: String, CodingKey {
            case population, releases, delta, series
            case epsilonSpent = "epsilon_spent"
            case epsilonBudget = "epsilon_budget"
            case epsilonLeft = "epsilon_left"
        }
    }

    public var records: Int
    public var verified: Bool
    public var problems: [Problem]
    public var populations: [Population]
    /// Every setting of a budget, oldest first (its own hash chain).
    public var budgetChanges: [PrivacyLedger.BudgetChange]

    enum CodingKeys: String, CodingKey {
        case records, verified, problems, populations
        case budgetChanges = "budget_changes"
    }

    public static func run(_ ledger: PrivacyLedger) throws -> LedgerAudit {
        try run(records: ledger.records(), budgets: ledger.budgets(), budgetHistory: ledger.budgetHistory(), head: ledger.head())
    }

    /// The audit of a ledger as read from any store (SQLite's `PrivacyLedger`, FedSegPostgres's
    /// `PostgresPrivacyLedger`): records and budget changes oldest first, and the head row.
    public static func run(
        records: [PrivacyLedger.Record], budgets budgetList: [PrivacyLedger.Budget], budgetHistory changes: [PrivacyLedger.BudgetChange],
        head: (sequence: Int64, hash: String)?
    ) throws -> LedgerAudit {
        let budgets = Dictionary(uniqueKeysWithValues: budgetList.map { ($0.population, $0) })
        var problems: [Problem] = []
        var previousHash = PrivacyLedger.genesisHash
        // One accountant per population, composed record by record: the audit (which the daemon
        // runs at every start) is linear in the ledger, not quadratic.
        var accountants: [String: RDPAccountant] = [:]
        var series: [String: [Point]] = [:]
        for (index, record) in records.enumerated() {
            if record.sequence != Int64(index + 1) {
                problems.append(Problem(sequence: record.sequence, reason: "expected sequence \(index + 1): a record was deleted or reordered"))
            }
            if record.previousHash != previousHash {
                problems.append(Problem(sequence: record.sequence, reason: "previous-hash link broken"))
            }
            if record.computeHash() != record.hash {
                problems.append(Problem(sequence: record.sequence, reason: "record hash does not match its fields (tampered)"))
            }
            previousHash = record.hash
            guard let mechanism = record.mechanismValue else {
                problems.append(Problem(sequence: record.sequence, reason: "unknown mechanism \(record.mechanism)"))
                continue
            }
            var accountant = accountants[record.population, default: RDPAccountant()]
            let delta = budgets[record.population]?.delta ?? record.delta
            if budgets[record.population] != nil && delta != record.delta {
                problems.append(Problem(sequence: record.sequence, reason: "recorded δ \(record.delta) differs from the population's δ \(delta)"))
            }
            let epsilon: Double
            do {
                try accountant.compose(mechanism.event, count: mechanism.count)
                accountants[record.population] = accountant
                epsilon = try accountant.epsilon(delta: delta).epsilon
            } catch {
                problems.append(Problem(sequence: record.sequence, reason: "parameters do not account: \(error)"))
                continue
            }
            if abs(epsilon - record.epsilonAfter) > 1e-9 * max(1, epsilon) {
                problems.append(Problem(sequence: record.sequence, reason: "stored ε \(record.epsilonAfter) differs from recomputed ε \(epsilon)"))
            }
            if let budget = budgets[record.population], epsilon > budget.epsilon * (1 + 1e-12) {
                problems.append(Problem(sequence: record.sequence, reason: "ε \(epsilon) exceeds the budget \(budget.epsilon)"))
            }
            series[record.population, default: []].append(Point(
                sequence: record.sequence, round: record.round, releaseID: record.releaseID, mode: record.mode, epsilon: epsilon
            ))
        }
        var previousChange = PrivacyLedger.genesisHash
        var latest: [String: PrivacyLedger.BudgetChange] = [:]
        for (index, change) in changes.enumerated() {
            if change.sequence != Int64(index + 1) || change.previousHash != previousChange || change.computeHash() != change.hash {
                problems.append(Problem(sequence: nil, reason: "budget change \(change.sequence): its chain is broken or its fields were altered"))
            }
            previousChange = change.hash
            latest[change.population] = change
        }
        for (name, budget) in budgets {
            guard let recorded = latest[name] else {
                problems.append(Problem(sequence: nil, reason: "the budget of \(name) was set outside the ledger (no budget record)"))
                continue
            }
            if recorded.epsilon != budget.epsilon || recorded.delta != budget.delta {
                problems.append(Problem(sequence: nil, reason: "the budget of \(name) (ε = \(budget.epsilon), δ = \(budget.delta)) differs from its last record (ε = \(recorded.epsilon), δ = \(recorded.delta)): changed outside the ledger"))
            }
        }
        if let last = records.last {
            if head?.sequence != last.sequence || head?.hash != last.hash {
                problems.append(Problem(sequence: nil, reason: "ledger head (\(head.map { "\($0.sequence)" } ?? "none")) does not match the newest record (\(last.sequence)): records were deleted from the end"))
            }
        } else if let head {
            problems.append(Problem(sequence: nil, reason: "ledger head says \(head.sequence) records but the ledger is empty"))
        }
        let names = Set(budgets.keys).union(accountants.keys).sorted()
        let populations = names.map { name -> Population in
            let points = series[name] ?? []
            let spent = points.last?.epsilon ?? 0
            let budget = budgets[name]
            return Population(
                population: name, releases: points.count, epsilonSpent: spent, epsilonBudget: budget?.epsilon,
                epsilonLeft: budget.map { max(0, $0.epsilon - spent) }, delta: budget?.delta, series: points
            )
        }
        return LedgerAudit(records: records.count, verified: problems.isEmpty, problems: problems, populations: populations, budgetChanges: changes)
    }
}

extension LedgerAudit {
    /// The releases on the chart's x axis: every release id in ledger order, once (a release
    /// charged to several populations is one x position for all of them).
    public var releaseOrder: [String] {
        var seen = Set<String>()
        var order: [String] = []
        for point in populations.flatMap(\.series).sorted(by: { $0.sequence < $1.sequence }) where seen.insert(point.releaseID).inserted {
            order.append(point.releaseID)
        }
        return order
    }

    /// A line chart of ε after each release, one line per population (at most 12), on one x axis
    /// of release order across populations: axes with ticks, release labels, each budget as a
    /// labelled dashed line, and a legend under the plot that wraps to fit the width.
    public func svg(width: Int = 760) -> String {
        let shown = Array(populations.prefix(12))
        let releases = releaseOrder
        let position = Dictionary(uniqueKeysWithValues: releases.enumerated().map { ($0.element, $0.offset) })
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939"]
        let characterWidth = 6.6
        // The legend's rows: entries laid out left to right, wrapped at the plot's width.
        let left = 96.0, right = 24.0, top = 44.0, plotHeight = 240.0, labelBand = 96.0
        let plotWidth = Double(width) - left - right
        var legend: [(x: Double, row: Int, text: String, color: String)] = []
        var cursor = 0.0, row = 0
        for (index, population) in shown.enumerated() {
            let text = "\(population.population) (δ = \(population.delta.map { "\($0)" } ?? "?"))"
            let entryWidth = 28 + characterWidth * Double(text.count) + 18
            if cursor > 0 && cursor + entryWidth > plotWidth {
                cursor = 0
                row += 1
            }
            legend.append((cursor, row, text, colors[index % colors.count]))
            cursor += entryWidth
        }
        let legendTop = top + plotHeight + labelBand
        let height = Int(legendTop + 20 * Double((legend.last?.row ?? 0) + 1) + 12)

        let maxEpsilon = Self.niceCeiling(max(shown.flatMap { $0.series.map(\.epsilon) + [$0.epsilonBudget ?? 0] }.max() ?? 1, 1e-9))
        let count = max(releases.count, 1)
        func x(_ index: Int) -> Double { count == 1 ? left + plotWidth / 2 : left + plotWidth * Double(index) / Double(count - 1) }
        func y(_ epsilon: Double) -> Double { top + plotHeight * (1 - epsilon / maxEpsilon) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"epsilon spent after each release\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(f(left))\" y=\"22\" font-size=\"14\" font-weight=\"bold\">ε spent after each release (each population at its own δ)</text>\n"
        // The y axis: ticks at round numbers, with grid lines.
        let step = maxEpsilon / 5
        for tick in 0...5 {
            let value = step * Double(tick)
            let ty = y(value)
            out += "<line x1=\"\(f(left))\" y1=\"\(f(ty))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(ty))\" stroke=\"#e3e6ea\"/>\n"
            out += "<line x1=\"\(f(left - 5))\" y1=\"\(f(ty))\" x2=\"\(f(left))\" y2=\"\(f(ty))\" stroke=\"black\"/>\n"
            out += "<text x=\"\(f(left - 8))\" y=\"\(f(ty + 4))\" text-anchor=\"end\">\(Self.tickLabel(value))</text>\n"
        }
        out += "<text x=\"16\" y=\"\(f(top + plotHeight / 2))\" transform=\"rotate(-90 16 \(f(top + plotHeight / 2)))\" text-anchor=\"middle\">ε</text>\n"
        // The x axis: one tick per release, at most 16 of them labelled with the release id.
        out += "<line x1=\"\(f(left))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(top + plotHeight))\" stroke=\"black\"/>\n"
        out += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotHeight))\" stroke=\"black\"/>\n"
        let labelEvery = max(1, Int((Double(releases.count) / 16).rounded(.up)))
        for (index, release) in releases.enumerated() {
            let tx = x(index)
            out += "<line x1=\"\(f(tx))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(tx))\" y2=\"\(f(top + plotHeight + 5))\" stroke=\"black\"/>\n"
            if index % labelEvery == 0 || index == releases.count - 1 {
                let label = Self.shortLabel(release)
                let ly = top + plotHeight + 14
                out += "<text x=\"\(f(tx))\" y=\"\(f(ly))\" transform=\"rotate(-35 \(f(tx)) \(f(ly)))\" text-anchor=\"end\" font-size=\"10\">\(Self.escape(label))</text>\n"
            }
        }
        if releases.isEmpty {
            out += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(top + plotHeight / 2))\" text-anchor=\"middle\" fill=\"#5b6575\">no releases yet</text>\n"
        }
        out += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(legendTop - 14))\" text-anchor=\"middle\">release (ledger order, \(releases.count) in all)</text>\n"
        // Budgets first, so that the lines of spending are drawn over them.
        for (index, population) in shown.enumerated() {
            guard let budget = population.epsilonBudget, budget <= maxEpsilon else { continue }
            let color = colors[index % colors.count]
            let by = y(budget)
            out += "<line x1=\"\(f(left))\" y1=\"\(f(by))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(by))\" stroke=\"\(color)\" stroke-dasharray=\"5 4\"/>\n"
            out += "<text x=\"\(f(left + plotWidth - 4))\" y=\"\(f(by - 4 - 12 * Double(index % 2)))\" text-anchor=\"end\" fill=\"\(color)\" font-size=\"11\">budget \(Self.escape(population.population)): ε = \(Self.tickLabel(budget))</text>\n"
        }
        for (index, population) in shown.enumerated() {
            let color = colors[index % colors.count]
            let points = population.series.compactMap { point in position[point.releaseID].map { (x($0), y(point.epsilon)) } }
            if points.count > 1 {
                out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " "))\"/>\n"
            }
            for point in points {
                out += "<circle cx=\"\(f(point.0))\" cy=\"\(f(point.1))\" r=\"2.5\" fill=\"\(color)\"/>\n"
            }
        }
        for entry in legend {
            let lx = left + entry.x, ly = legendTop + 20 * Double(entry.row)
            out += "<line x1=\"\(f(lx))\" y1=\"\(f(ly))\" x2=\"\(f(lx + 20))\" y2=\"\(f(ly))\" stroke=\"\(entry.color)\" stroke-width=\"2\"/>\n"
            out += "<text x=\"\(f(lx + 26))\" y=\"\(f(ly + 4))\">\(Self.escape(entry.text))</text>\n"
        }
        return out + "</svg>\n"
    }

    /// The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `value`: the y axis's top.
    static func niceCeiling(_ value: Double) -> Double {
        let power = pow(10, floor(log10(value)))
        for factor in [1.0, 2, 2.5, 5, 10] where factor * power >= value * (1 - 1e-12) { return factor * power }
        return 10 * power
    }

    /// A release id short enough for a rotated tick label: `run-…-67f749e1/round-3` becomes
    /// `49e1/round-3` (the run's last four characters, then the release within it).
    static func shortLabel(_ release: String) -> String {
        let parts = release.split(separator: "/", omittingEmptySubsequences: false)
        let text = parts.count > 1 ? String(parts.dropLast().joined(separator: "/").suffix(4)) + "/" + String(parts.last!) : release
        return text.count > 16 ? String(text.prefix(7)) + "…" + String(text.suffix(8)) : text
    }

    static func tickLabel(_ value: Double) -> String {
        value == 0 ? "0" : String(format: "%g", (value * 1e6).rounded() / 1e6)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

extension LedgerAudit {
    /// The audit as text for a terminal: totals per population, every release, budget changes
    /// and problems (what `fedseg privacy audit` and `fedseg-node privacy audit` print).
    public func report(source: String) -> String {
        var out = ""
        func line(_ text: String) { out += text + "\n" }
        line("ledger \(source): \(records) records, \(verified ? "chain verified" : "VERIFICATION FAILED")")
        // Columns as wide as the longest name: release ids and run populations are long.
        let populationWidth = max(20, populations.map(\.population.count).max() ?? 0)
        let releaseWidth = max(18, populations.flatMap { $0.series.map(\.releaseID.count) }.max() ?? 0)
        func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
        func f(_ v: Double?) -> String { v.map { String(format: "%10.4f", $0) } ?? "         -" }
        line(pad("population", populationWidth) + "   releases     ε spent    ε budget      ε left           δ")
        for p in populations {
            line(pad(p.population, populationWidth) + String(format: " %9d  ", p.releases)
                + f(p.epsilonSpent) + "  " + f(p.epsilonBudget) + "  " + f(p.epsilonLeft) + "  " + (p.delta.map { String(format: "%10.2g", $0) } ?? "-"))
        }
        line("\nround  " + pad("release", releaseWidth) + " " + pad("population", populationWidth) + "  mode         ε after")
        for p in populations {
            for point in p.series {
                line(String(format: "%5lld  ", point.round) + pad(point.releaseID, releaseWidth) + " "
                    + pad(p.population, populationWidth) + "  " + pad(point.mode, 11) + String(format: " %10.4f", point.epsilon))
            }
        }
        if !budgetChanges.isEmpty {
            line("\nbudget changes")
            for change in budgetChanges {
                line(String(format: "%5lld  ", change.sequence) + pad(change.population, populationWidth)
                    + String(format: "  ε = %-10g δ = %-8g ", change.epsilon, change.delta) + change.createdAt + "  " + change.reason)
            }
        }
        for problem in problems {
            line("problem: " + (problem.sequence.map { "record \($0): " } ?? "") + problem.reason)
        }
        return out
    }
}
