// Tests for FedSegProtocol arrive with the issue that builds it.
import FedSegProtocol
