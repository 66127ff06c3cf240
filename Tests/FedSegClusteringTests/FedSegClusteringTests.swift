// Tests for FedSegClustering arrive with the issue that builds it.
import FedSegClustering
