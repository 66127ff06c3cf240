import FedSegCrypto
import FedSegPrivacy
import FedSegProtocol
import Foundation
import Hummingbird
import Mustache

/// The dashboard's pages: what each shows, read from the coordinator, the store and the ledger,
/// and rendered with the templates of `DashboardTemplates`. Released values only: segment sizes
/// are the noisy released counts, labelled so and never shown below zero.
struct DashboardPages: Sendable {
    enum Page: String, CaseIterable, Sendable {
        case runs, privacy, segments, clients

        var title: String {
            switch self {
            case .runs: "Runs"
            case .privacy: "Privacy"
            case .segments: "Segments"
            case .clients: "Clients"
            }
        }

        var path: String { self == .runs ? "/dashboard" : "/dashboard/\(rawValue)" }
    }

    let coordinator: Coordinator
    let library: MustacheLibrary
    /// Clients listed on the clients page at most (the counts cover all).
    static let clientRows = 500

    init(coordinator: Coordinator) {
        self.coordinator = coordinator
        library = DashboardTemplates.library()
    }

    func render(_ view: Any, _ template: String) -> String {
        library.render(view, withTemplate: template) ?? "template \(template) is missing"
    }

    // MARK: Layout

    struct NavigationItem { var title: String; var path: String; var current: Bool }
    struct LayoutView {
        var title: String
        var navigation: [NavigationItem]
        var body: String
        var csrf: String
        var signedIn: Bool
        var signingKey: String
        var generated: String
    }

    func layout(_ page: Page, body: String, request: Request, access: DashboardAccess) -> String {
        let csrf = access.csrf(request)
        return render(LayoutView(
            title: page.title, navigation: Page.allCases.map { NavigationItem(title: $0.title, path: $0.path, current: $0 == page) },
            body: body, csrf: csrf, signedIn: !csrf.isEmpty, signingKey: coordinator.keys.identity.signing.publicKey.hex,
            generated: Self.time(coordinator.settings.clock.now())
        ), "layout")
    }

    func login(message: String?) -> String {
        struct LoginView { var message: String; var failed: Bool }
        return render(LoginView(message: message ?? "", failed: message != nil), "login")
    }

    func message(title: String, text: String) -> String {
        struct MessageView { var title: String; var text: String }
        return render(MessageView(title: title, text: text), "message")
    }

    // MARK: Runs

    struct RunRow { var id: String; var status: String; var phase: String; var committedRounds: Int; var created: String }
    struct RunsView { var hasRuns: Bool; var runs: [RunRow]; var live: String }

    func runs(csrf: String) async throws -> String {
        let runs = try coordinator.store.runs().reversed().map {
            RunRow(id: $0.id, status: $0.status.rawValue, phase: $0.phase.rawValue, committedRounds: $0.committedRounds, created: Self.time($0.createdAt))
        }
        return render(RunsView(hasRuns: !runs.isEmpty, runs: Array(runs), live: try await liveRun(csrf: csrf)), "runs")
    }

    struct KeyValue { var key: String; var value: String }
    struct OpenRoundView {
        var id: UInt64
        var phase: String
        var participants: Int
        var expected: Int
        var declined: Int
        var progressMax: Int
        var secondsLeft: String
        var stage: String
        var hasStage: Bool
        var progress: [KeyValue]
    }
    struct RoundRow { var id: UInt64; var phase: String; var status: String; var participants: Int; var declined: Int; var expected: Int; var shift: String }
    struct RunView {
        var id: String
        var status: String
        var running: Bool
        var reason: String
        var phase: String
        var mode: String
        var embedder: String
        var k: Int
        var epsilon: String
        var delta: String
        var spent: String
        var roundsLine: String
        var open: [OpenRoundView]
        var waiting: Bool
        var rounds: [RoundRow]
        var stale: String
        var segmentation: String
        var csrf: String
    }

    /// The current (or last) run, as the live section of the runs page shows it and
    /// `/dashboard/live/run` refreshes it. `csrf` goes into its stop form.
    func liveRun(csrf: String) async throws -> String {
        let summary: RunSummary
        do {
            summary = try await coordinator.summary()
        } catch CoordinatorError.noRun {
            return message(title: "No run yet", text: "Start one with fedseg run start (or POST /admin/v1/runs).")
        }
        let now = coordinator.settings.clock.now()
        let open = summary.openRound.map { round in
            OpenRoundView(
                id: round.id, phase: round.phase.rawValue, participants: round.participants, expected: round.expected, declined: round.declined,
                progressMax: max(round.expected, 1), secondsLeft: String(format: "%.0f s", max(0, round.deadlineUnix - now)),
                stage: round.secAggStage ?? "", hasStage: round.secAggStage != nil,
                progress: (round.secAggProgress ?? [:]).sorted { $0.key < $1.key }.map { KeyValue(key: $0.key, value: "\($0.value)") }
            )
        }
        let view = RunView(
            id: summary.id, status: summary.status.rawValue, running: summary.status == .running, reason: summary.reason ?? "",
            phase: summary.phase.rawValue, mode: summary.privacyMode.rawValue, embedder: summary.embedderID, k: summary.k,
            epsilon: Self.number(summary.epsilon), delta: "\(summary.delta)", spent: Self.number(summary.epsilonSpent),
            roundsLine: "\(summary.committedRounds) committed of at most \(summary.plannedRounds) clustering rounds",
            open: open.map { [$0] } ?? [], waiting: summary.status == .running && open == nil,
            rounds: summary.rounds.reversed().map {
                RoundRow(
                    id: $0.id, phase: $0.phase.rawValue, status: $0.status.rawValue, participants: $0.participants, declined: $0.declined,
                    expected: $0.expected, shift: $0.centroidShift.map { String(format: "%.4f", $0) } ?? "–"
                )
            },
            stale: (summary.staleClients ?? []).isEmpty ? "" : "\(summary.staleClients!.count) stale (rounds do not wait for them): \(summary.staleClients!.prefix(10).joined(separator: ", "))",
            segmentation: summary.segmentation.map { "k = \($0.currentK) (\($0.selection.rawValue), \($0.clusterer.rawValue)): \($0.reason)" } ?? "",
            csrf: csrf
        )
        return render(view, "run")
    }

    // MARK: Privacy

    struct PopulationRow { var name: String; var releases: Int; var spent: String; var budget: String; var left: String; var delta: String }
    struct ChangeRow { var sequence: Int64; var population: String; var epsilon: String; var delta: String; var at: String; var reason: String }
    struct PrivacyView {
        var verified: Bool
        var records: Int
        var problems: [String]
        var populations: [PopulationRow]
        var chart: String
        var changes: [ChangeRow]
    }

    func privacy() throws -> String {
        let audit = try LedgerAudit.run(coordinator.store.ledger)
        return render(PrivacyView(
            verified: audit.verified, records: audit.records,
            problems: audit.problems.map { ($0.sequence.map { "record \($0): " } ?? "") + $0.reason },
            populations: audit.populations.map {
                PopulationRow(
                    name: $0.population, releases: $0.releases, spent: Self.number($0.epsilonSpent), budget: $0.epsilonBudget.map(Self.number) ?? "–",
                    left: $0.epsilonLeft.map(Self.number) ?? "–", delta: $0.delta.map { "\($0)" } ?? "–"
                )
            },
            chart: audit.svg(),
            changes: audit.budgetChanges.map {
                ChangeRow(sequence: $0.sequence, population: $0.population, epsilon: Self.number($0.epsilon), delta: "\($0.delta)", at: $0.createdAt, reason: $0.reason)
            }
        ), "privacy")
    }

    // MARK: Segments

    struct SegmentRow { var id: Int; var label: String; var size: String; var spread: String; var topItems: String; var phrases: String }
    struct SegmentsView { var runID: String; var status: String; var note: String; var hasSegments: Bool; var segments: [SegmentRow] }

    /// The current run's segments; while it has committed no round yet, the last run's that did.
    func segments() async throws -> String {
        var report: SegmentsReport
        var note = ""
        do {
            report = try await CoordinatorRoutes.segmentsReport(coordinator)
        } catch CoordinatorError.noRun {
            return message(title: "No segments yet", text: "Segments appear once a run has committed a round.")
        }
        let runs = try coordinator.store.runs()
        if runs.last(where: { $0.id == report.runID })?.committedRounds == 0,
            let earlier = runs.last(where: { $0.id != report.runID && $0.committedRounds > 0 })
        {
            note = "Run \(report.runID) has not committed a round yet; these are the segments of run \(earlier.id)."
            report = try coordinator.store.segments(runID: earlier.id, seedVectors: nil)
        }
        return render(SegmentsView(
            runID: report.runID, status: report.status.rawValue, note: note, hasSegments: !report.segments.isEmpty,
            segments: report.segments.map { segment in
                SegmentRow(
                    id: segment.id, label: segment.label.isEmpty ? "segment \(segment.id)" : segment.label, size: Self.size(segment.releasedCount),
                    spread: String(format: "%.3f", segment.spread), topItems: segment.topItems.prefix(10).joined(separator: ", "),
                    phrases: segment.nearestSeedPhrases.prefix(5).joined(separator: "; ")
                )
            }
        ), "segments")
    }

    /// A released count as an operator should read it: noisy, and never negative on screen.
    static func size(_ released: Double?) -> String {
        guard let released else { return "not released" }
        let shown = max(0, Int(released.rounded()))
        return released < 0 ? "≈ 0 (noisy; released \(String(format: "%.1f", released)), clamped)" : "≈ \(shown) (noisy)"
    }

    // MARK: Clients

    struct ClientRow { var id: String; var status: String; var enrolled: String; var lastSeen: String; var stale: Bool }
    struct ClientsView {
        var total: Int
        var active: Int
        var revoked: Int
        var stale: Int
        var rows: [ClientRow]
        var truncated: Bool
        var shown: Int
        var rejections: [KeyValue]
        var hasRejections: Bool
    }

    func clients() throws -> String {
        let entries = try coordinator.clientEntries()
        let rejections = coordinator.metrics.rejectionCounts().sorted { $0.value > $1.value }.map { KeyValue(key: $0.key, value: "\($0.value)") }
        return render(ClientsView(
            total: entries.count, active: entries.filter { $0.status == .active }.count, revoked: entries.filter { $0.status == .revoked }.count,
            stale: entries.filter { $0.stale && $0.status == .active }.count,
            rows: entries.prefix(Self.clientRows).map {
                ClientRow(id: $0.id, status: $0.status.rawValue, enrolled: Self.time($0.enrolledAt), lastSeen: $0.lastSeenAt > 0 ? Self.time($0.lastSeenAt) : "never", stale: $0.stale)
            },
            truncated: entries.count > Self.clientRows, shown: min(entries.count, Self.clientRows), rejections: rejections, hasRejections: !rejections.isEmpty
        ), "clients")
    }

    // MARK: Formatting

    static func time(_ unix: Double) -> String {
        Date(timeIntervalSince1970: unix).formatted(Date.ISO8601FormatStyle().year().month().day().time(includingFractionalSeconds: false))
    }

    static func number(_ value: Double) -> String { String(format: "%.4f", value) }
}
