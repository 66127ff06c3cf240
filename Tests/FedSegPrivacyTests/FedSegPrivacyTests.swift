// Tests for FedSegPrivacy arrive with the issue that builds it.
import FedSegPrivacy
