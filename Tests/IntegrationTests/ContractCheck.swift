import FedSegTestSupport
import Testing

/// Every answer a real daemon gave in a test (recorded with `--response-log`) is documented in
/// docs/openapi.json and, for JSON, validates against its schema; `including` names answers
/// (`METHOD /route status`) the test must have produced, so that the check covers what it claims.
func expectAnswersDocumented(
    _ coordinator: RunningCoordinator, including: Set<String> = [], sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let (problems, answers, distinct) = try coordinator.contractProblems()
    #expect(answers > 0, "the daemon recorded no answers", sourceLocation: sourceLocation)
    #expect(problems.isEmpty, "answers that break docs/openapi.json:\n\(problems.joined(separator: "\n"))", sourceLocation: sourceLocation)
    let missing = including.subtracting(distinct)
    #expect(missing.isEmpty, "expected answers not given: \(missing.sorted()); given: \(distinct.sorted())", sourceLocation: sourceLocation)
}
