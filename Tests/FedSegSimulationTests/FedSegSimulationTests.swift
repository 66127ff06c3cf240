// Tests for FedSegSimulation arrive with the issue that builds it.
import FedSegSimulation
