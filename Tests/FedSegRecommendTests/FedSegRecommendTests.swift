// Tests for FedSegRecommend arrive with the issue that builds it.
import FedSegRecommend
