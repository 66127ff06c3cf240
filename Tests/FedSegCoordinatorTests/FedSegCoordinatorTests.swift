// Tests for FedSegCoordinator arrive with the issue that builds it.
import FedSegCoordinator
