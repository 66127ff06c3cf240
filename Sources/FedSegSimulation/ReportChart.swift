import Foundation

extension NetworkedSimulation.Report {
    /// Two bar charts in one SVG: each segment's size (the released, noisy count, labelled) and
    /// Recall@10 (with cold-start Recall@10 beside it) per recommendation model. What
    /// `client-sim run|simulate --report-svg FILE` writes.
    public func svg(width: Int = 760) -> String {
        let left = 150.0, right = 70.0, barHeight = 18.0, gap = 6.0, sectionGap = 56.0
        let plotWidth = Double(width) - left - right
        let segmentRows = segments.sorted { $0.size > $1.size }
        let sizeTop = 56.0
        let recallTop = sizeTop + Double(segmentRows.count) * (barHeight + gap) + sectionGap + 20
        let height = Int(recallTop + Double(recommendation.count) * (2 * barHeight + gap + 4) + 40)
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        func clipped(_ text: String, _ limit: Int) -> String { text.count > limit ? String(text.prefix(limit - 1)) + "…" : text }

        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"segment sizes and recall per model\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"16\" y=\"24\" font-size=\"14\" font-weight=\"bold\">Run \(escape(runID)): \(clients) clients, \(users) users, \(privacyMode) noise, ε = \(String(format: "%g", epsilon))</text>\n"
        out += "<text x=\"16\" y=\"\(f(sizeTop - 10))\" font-weight=\"bold\">Segment sizes (released counts with DP noise, clamped at 0)</text>\n"
        let largest = Double(max(segmentRows.map(\.size).max() ?? 1, 1))
        for (row, segment) in segmentRows.enumerated() {
            let y = sizeTop + Double(row) * (barHeight + gap)
            let w = plotWidth * Double(max(segment.size, 0)) / largest
            out += "<text x=\"\(f(left - 8))\" y=\"\(f(y + 13))\" text-anchor=\"end\">\(escape(clipped("\(segment.id): \(segment.label.isEmpty ? "segment" : segment.label)", 24)))</text>\n"
            out += "<rect x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(barHeight))\" fill=\"#1f77b4\"/>\n"
            out += "<text x=\"\(f(left + w + 6))\" y=\"\(f(y + 13))\">≈ \(segment.size)</text>\n"
        }
        out += "<text x=\"16\" y=\"\(f(recallTop - 10))\" font-weight=\"bold\">Recall@10 per model (dark: all held-out users; light: cold start)</text>\n"
        let best = max(recommendation.flatMap { [$0.recallAt10, $0.coldStartRecallAt10] }.max() ?? 0, 1e-9)
        for (row, model) in recommendation.enumerated() {
            let y = recallTop + Double(row) * (2 * barHeight + gap + 4)
            out += "<text x=\"\(f(left - 8))\" y=\"\(f(y + 22))\" text-anchor=\"end\">\(escape(clipped(model.model, 24)))</text>\n"
            for (index, value) in [model.recallAt10, model.coldStartRecallAt10].enumerated() {
                let barY = y + Double(index) * barHeight
                let w = plotWidth * value / best
                out += "<rect x=\"\(f(left))\" y=\"\(f(barY))\" width=\"\(f(w))\" height=\"\(f(barHeight - 2))\" fill=\"\(index == 0 ? "#2ca02c" : "#98df8a")\"/>\n"
                out += "<text x=\"\(f(left + w + 6))\" y=\"\(f(barY + 12))\" font-size=\"11\">\(String(format: "%.4f", value))</text>\n"
            }
        }
        return out + "</svg>\n"
    }
}
