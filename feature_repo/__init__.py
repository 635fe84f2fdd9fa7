"""The Feast repository: the `customer` entity, one feature view per feature family, a push source
for real-time signals, and one FeatureService per model — the contract between training and serving."""
