import ArgumentParser
import FedSegProtocol

// Modes on the command line take the same raw values as the admin API and the database; a wrong
// value is refused by the parser with the list of allowed ones.
extension PrivacyMode: ExpressibleByArgument {}
