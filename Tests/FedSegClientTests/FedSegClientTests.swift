// Tests for FedSegClient arrive with the issue that builds it.
import FedSegClient
