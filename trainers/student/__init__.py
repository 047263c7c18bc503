"""The GNN student: node features, edge-type-aware encoder, readout and task heads."""
from trainers.student.features import GraphEncoding
from trainers.student.model import Student

__all__ = ["GraphEncoding", "Student"]
