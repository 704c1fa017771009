"""Zero-shot classification with an image-text model in miniature: CLIP's idea, small enough to train here.

CLIP (Radford et al., 2021) trains an image encoder and a text encoder together so that a photo and
its caption land close in one embedding space. A class never seen in training can then be recognised
from a sentence alone: embed "a photo of a <class>" for every candidate class and pick the nearest.

    vocab = Vocabulary(all_captions)
    model = ImageTextModel(image_encoder, TextEncoder(len(vocab)))
    task = ImageText(model, vocab, captions)                 # captions[c]: sentences describing class c
    fit(model, train_without_held_out_classes, epochs=10, task=task)
    probs = zero_shot(model, vocab, images, ["a low closed shoe with laces", ...])   # (N, prompts)

The text encoder here is a bag of words (mean of word embeddings, then an MLP); CLIP's is a
transformer over sub-word tokens. The loss is CLIP's symmetric cross-entropy over the batch's
image-text similarity matrix (:func:`clip_loss`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tasks import Task

__all__ = ["Vocabulary", "TextEncoder", "ImageTextModel", "clip_loss", "ImageText", "zero_shot",
           "FASHION_MNIST_CAPTIONS", "FASHION_MNIST_PROMPTS"]

PAD, UNK = 0, 1

# Sentences about each Fashion-MNIST class (by label), written from its attributes: what it is worn on,
# sleeves, length, open or closed, fastening. A class's name is used only in its own captions, so a
# held-out class must be recognised from attribute words learnt on other classes.
FASHION_MNIST_CAPTIONS = [
    ["a top with short sleeves", "a short sleeved top", "clothing for the upper body with short sleeves"],  # T-shirt/top
    ["long trousers with two legs", "clothing for the legs", "long clothing for the lower body"],         # Trouser
    ["a top with long sleeves and no buttons", "a warm knitted top", "a long sleeved knitted top"],         # Pullover
    ["a dress", "one piece clothing with a skirt", "a long dress with no sleeves"],                          # Dress
    ["a coat with long sleeves and buttons", "a long coat open at the front", "warm outerwear with a zip"], # Coat
    ["an open shoe with straps", "a low open shoe", "a flat sandal with straps"],                           # Sandal
    ["a shirt with a collar and buttons", "a top with a collar", "a buttoned shirt with sleeves"],          # Shirt
    ["a low closed shoe with laces", "a sport shoe with laces", "a closed low shoe"],                       # Sneaker
    ["a bag with a handle", "a bag for carrying things", "a handbag with a strap"],                         # Bag
    ["a high closed shoe", "a boot that covers the ankle", "a closed boot with a heel"],                    # Ankle boot
]
# One prompt per class for zero-shot classification, made only of words that other classes' captions use.
FASHION_MNIST_PROMPTS = [
    "a top with short sleeves", "long clothing for the legs", "a top with long sleeves", "one piece clothing",
    "warm outerwear open at the front", "a low open shoe", "a top with a collar and buttons", "a low closed shoe",
    "a bag with a handle", "a high closed shoe",
]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class Vocabulary:
    """Word-level tokens: every word of ``texts`` gets an id (0 is padding, 1 stands for an unknown word)."""

    def __init__(self, texts: Sequence[str]):
        self.words = ["<pad>", "<unk>", *sorted({w for t in texts for w in _words(t)})]
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def unknown(self, texts: Sequence[str]) -> list[str]:
        """The words of ``texts`` this vocabulary has never seen: the encoder reads each as <unk>."""
        return sorted({w for t in texts for w in _words(t) if w not in self.index})

    def encode(self, texts: Sequence[str], length: int | None = None) -> torch.Tensor:
        """(N, length) token ids, padded with 0 (default length: the longest text)."""
        ids = [[self.index.get(w, UNK) for w in _words(t)] for t in texts]
        length = length or max(1, max(len(i) for i in ids))
        return torch.tensor([(i + [PAD] * length)[:length] for i in ids], dtype=torch.long)


class TextEncoder(nn.Module):
    """Token ids (B, L) -> (B, width): the mean of the words' embeddings (padding left out), then an MLP."""

    def __init__(self, vocab_size: int, width: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, width))
        self.num_features = width

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != PAD).unsqueeze(-1).float()                          # (B, L, 1)
        mean = (self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, width)
        return self.mlp(mean)


class ImageTextModel(nn.Module):
    """An image encoder (pooled features, e.g. a zoo model with ``num_classes=0``) and a text encoder, each
    followed by a linear projection into one ``dim``-dimensional space of unit vectors, and CLIP's learnt
    temperature (``logit_scale``, the log of 1/τ, starting at τ = 0.07). ``model(images)`` gives image
    embeddings; ``model.encode_text(tokens)`` text embeddings."""

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, dim: int = 64):
        super().__init__()
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        width = getattr(image_encoder, "head_hidden_size", image_encoder.num_features)  # what it returns headless
        self.image_proj = nn.Linear(width, dim, bias=False)
        self.text_proj = nn.Linear(text_encoder.num_features, dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image_encoder(images)), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_encoder(tokens)), dim=-1)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
              targets: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric loss: cross-entropy of each image picking its text among the batch's texts, and of
    each text picking its image, averaged. Row i of both is one pair. ``targets`` (B, B), rows summing to
    1, says which pairs match when a batch holds several captions that fit an image (default: the diagonal).
    Computed in float32 (outside autocast), with 1/τ capped at 100 as in CLIP.
    """
    scale = torch.as_tensor(logit_scale).clamp(max=math.log(100)).exp()
    with torch.autocast(image_emb.device.type, enabled=False):
        logits = scale.float() * image_emb.float() @ text_emb.float().T  # (B, B)
    if targets is None:
        targets = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T / targets.T.sum(1, keepdim=True))) / 2


class ImageText(Task):
    """Train ``model`` (an :class:`ImageTextModel`) on labelled images and sentences about each class:
    every image is paired with one of its class's ``captions`` drawn at random (on the device); images of
    the same class in a batch count as matching each other's captions (a class with fewer captions than
    another repeats its own). ``pair_acc``: how often an image's most similar text in the batch belongs to
    its class."""
    metrics = {"pair_acc": "pair_acc"}
    train_metrics = ("pair_acc",)

    def __init__(self, model: ImageTextModel, vocab: Vocabulary, captions: Sequence[Sequence[str]]):
        if any(len(c) == 0 for c in captions):
            raise ValueError("every class needs at least one caption (give [] classes a sentence, or drop them)")
        self.model = model
        most = max(len(c) for c in captions)
        flat = [c[i % len(c)] for c in captions for i in range(most)]  # (classes * most) sentences, cycled
        self.tokens = vocab.encode(flat).view(len(captions), most, -1)   # (classes, most, L)

    def to(self, device):
        self.tokens = self.tokens.to(device)
        return self

    def prepare(self, x, y, train: bool):
        if train:  # a random caption of each image's class, drawn on the device
            pick = torch.randint(0, self.tokens.shape[1], (len(y),), device=y.device)
        else:      # validation: each class's first caption, the same every epoch
            pick = torch.zeros_like(y)
        return x, (self.tokens.to(y.device)[y, pick], y)

    def loss(self, out, targets) -> torch.Tensor:
        tokens, y = targets
        same = (y[:, None] == y[None, :]).float()
        return clip_loss(out, self.model.encode_text(tokens), self.model.logit_scale, same / same.sum(1, keepdim=True))

    def train_sums(self, out, targets) -> dict[str, torch.Tensor]:
        tokens, y = targets
        with torch.no_grad():
            best = (out.float() @ self.model.encode_text(tokens).float().T).argmax(1)
        return {"pair_acc": (y[best] == y).sum()}

    def evaluate(self, outs: list, targets: list) -> dict:
        n = sum(len(o) for o in outs)
        loss = sum(self.loss(o, t).item() * len(o) for o, t in zip(outs, targets)) / n
        return {"loss": loss, "pair_acc": sum(self.train_sums(o, t)["pair_acc"].item() for o, t in zip(outs, targets)) / n}


@torch.no_grad()
def zero_shot(model: ImageTextModel, vocab: Vocabulary, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """(N, len(prompts)) probabilities: each image against the text embedding of every prompt; the class
    of a prompt never seen in training is recognised from its words alone. ``images`` is a prepared float
    batch (or uint8 images, prepared as the model was trained)."""
    from .preprocess import prepare
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    text = model.encode_text(vocab.encode(prompts).to(device))
    image = model(prepare(model, images.to(device)))
    model.train(was_training)
    return (model.logit_scale.clamp(max=math.log(100)).exp() * image @ text.T).softmax(1)
