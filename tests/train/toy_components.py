import torch
from torch import nn

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset


class VecEncoder(nn.Module):
    """A trainable linear encoder over a flat vector 'image'."""

    trainable = True
    identity = "vec"

    def __init__(self, d_in=6, out_dim=8):
        super().__init__()
        self.out_dim = out_dim
        self.lin = nn.Linear(d_in, out_dim)

    def preprocess(self, image):
        return image.reshape(-1)

    def forward(self, x):
        return self.lin(x)


class BagEncoder(nn.Module):
    trainable = True
    identity = "bag"
    vocab_size = 8
    special_ids = (0,)

    def __init__(self, out_dim=8):
        super().__init__()
        self.out_dim = out_dim
        self.emb = nn.EmbeddingBag(self.vocab_size, out_dim)

    def tokenize(self, texts):
        ids = [[1 + (ord(c) % 7) for c in t] or [0] for t in texts]
        n = max(len(x) for x in ids)
        ids = [x + [0] * (n - len(x)) for x in ids]
        t = torch.tensor(ids)
        return {"input_ids": t, "attention_mask": (t != 0).long()}

    def forward(self, tokens):
        return self.emb(tokens["input_ids"])


class ToyData(MultimodalDataset):
    def __init__(self, n=96, seed=0, split="train"):
        g = torch.Generator().manual_seed(seed)
        self.info = DatasetInfo(
            "toydata",
            "single_label",
            ["a", "b", "c"],
            modalities={"image": "image", "text": "text"},
        )
        self.split = split
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = torch.randn(n, 1, 2, 3, generator=g) + self.y.view(-1, 1, 1, 1).float()
        self.texts = [("abc"[int(c)] * 3) for c in self.y]
        self.labels = [int(c) for c in self.y]

    def __len__(self):
        return len(self.y)

    def get(self, i):
        return Example({"image": self.x[i], "text": self.texts[i]}, self.y[i], i)


def toy_trainer(run_dir, strategy, settings, observers=None, validate=None):
    """A Trainer of the toy encoders on the toy data (seeded: the same weights each call),
    validated as a run is (``Evaluator.modality_scores`` on a toy validation split) unless
    ``validate`` is given."""
    from balgrad.data._pipeline import InputPipeline
    from balgrad.evaluate._protocol import Evaluator
    from balgrad.models import MultimodalModel
    from balgrad.train._trainer import Trainer

    torch.manual_seed(0)
    img, txt = VecEncoder(), BagEncoder()
    pipeline = InputPipeline({"image": img, "text": txt}, progress=False)
    if validate is None:
        val_set = ToyData(30, seed=1, split="val")
        validate = Evaluator(
            pipeline, val_set, ["accuracy"], precision=settings.precision
        ).modality_scores
    return Trainer(
        MultimodalModel({"image": img, "text": txt}, 3, embed_dim=8),
        strategy,
        pipeline,
        ToyData(96),
        settings,
        run_dir,
        torch.device("cpu"),
        observers=observers,
        validate=validate,
    )
