// FedSegClustering: see DESIGN.md's layout table; filled by its issue.
