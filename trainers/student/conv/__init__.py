"""Edge-type-aware message-passing layers, one per file (PyG ``nn/conv`` style), behind one
interface: ``layer(h, edge_index, edge_type, edge_weight) -> h`` with a residual path + LayerNorm
(``base.TypedLayer``). ``student.conv`` picks one by name."""
from trainers.student.conv.base import TypedLayer
from trainers.student.conv.gine import GINELayer
from trainers.student.conv.rgcn import RGCNLayer
from trainers.student.conv.transformer import TransformerLayer

CONVS: dict[str, type[TypedLayer]] = {"transformer": TransformerLayer, "gine": GINELayer, "rgcn": RGCNLayer}

__all__ = ["CONVS", "GINELayer", "RGCNLayer", "TransformerLayer", "TypedLayer"]
