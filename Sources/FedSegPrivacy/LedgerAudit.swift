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
        let records = try ledger.records()
        let budgets = Dictionary(uniqueKeysWithValues: try ledger.budgets().map { ($0.population, $0) })
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
        let changes = try ledger.budgetHistory()
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
        let head = try ledger.head()
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

    /// A line chart of ε after each release, one line per population (at most 12).
    public func svg(width: Int = 720, height: Int = 360) -> String {
        let margin = 48.0
        let shown = populations.prefix(12)
        let maxEpsilon = max(shown.flatMap { $0.series.map(\.epsilon) + [$0.epsilonBudget ?? 0] }.max() ?? 1, 1e-9)
        let maxIndex = max(shown.map(\.series.count).max() ?? 1, 1)
        let w = Double(width) - 2 * margin
        let h = Double(height) - 2 * margin
        func x(_ i: Int) -> Double { margin + w * Double(i) / Double(max(maxIndex - 1, 1)) }
        func y(_ e: Double) -> Double { margin + h * (1 - e / maxEpsilon) }
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939"]
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(margin)\" y=\"20\">ε spent after each release (δ per population)</text>\n"
        out += "<line x1=\"\(margin)\" y1=\"\(margin + h)\" x2=\"\(margin + w)\" y2=\"\(margin + h)\" stroke=\"black\"/>\n"
        out += "<line x1=\"\(margin)\" y1=\"\(margin)\" x2=\"\(margin)\" y2=\"\(margin + h)\" stroke=\"black\"/>\n"
        out += "<text x=\"4\" y=\"\(margin + 4)\">\(String(format: "%.3g", maxEpsilon))</text><text x=\"4\" y=\"\(margin + h)\">0</text>\n"
        out += "<text x=\"\(margin + w / 2 - 30)\" y=\"\(Double(height) - 10)\">release</text>\n"
        for (index, population) in shown.enumerated() {
            let color = colors[index % colors.count]
            let points = population.series.enumerated().map { String(format: "%.1f,%.1f", x($0.offset), y($0.element.epsilon)) }
            if !points.isEmpty {
                out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>\n"
            }
            if let budget = population.epsilonBudget {
                out += "<line x1=\"\(margin)\" y1=\"\(y(budget))\" x2=\"\(margin + w)\" y2=\"\(y(budget))\" stroke=\"\(color)\" stroke-dasharray=\"4 4\"/>\n"
            }
            let label = population.population.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            out += "<text x=\"\(margin + w - 150)\" y=\"\(margin + 14 * Double(index + 1))\" fill=\"\(color)\">\(label)</text>\n"
        }
        return out + "</svg>\n"
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
