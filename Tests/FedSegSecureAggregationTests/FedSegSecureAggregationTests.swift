// Tests for FedSegSecureAggregation arrive with the issue that builds it.
import FedSegSecureAggregation
