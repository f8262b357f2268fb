"""Weight sharing and entropy coding (Deep Compression, Han, Mao, Dally, ICLR 2016): per-layer
k-means with centroid fine-tuning, canonical Huffman and rANS coders, and the `.slim` file."""

from slimkit.share.coding import CODERS, CodingError, entropy_bits
from slimkit.share.kmeans import (
    WeightSharing,
    freeze_shared,
    kmeans_1d,
    share_weights,
    share_weights_,
    shared_tensors,
)
from slimkit.share.report import CompressionReport
from slimkit.share.slimfile import (
    SlimFileError,
    compressed_bytes,
    compression_report,
    is_slim_file,
    load_compressed,
    read_compressed,
    save_compressed,
)

__all__ = [
    "CODERS",
    "CodingError",
    "CompressionReport",
    "SlimFileError",
    "WeightSharing",
    "compressed_bytes",
    "compression_report",
    "entropy_bits",
    "freeze_shared",
    "is_slim_file",
    "kmeans_1d",
    "load_compressed",
    "read_compressed",
    "save_compressed",
    "share_weights",
    "share_weights_",
    "shared_tensors",
]
