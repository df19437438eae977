"""Data: the motion and dataset formats, importers, the face tracker and the synthetic corpus."""
