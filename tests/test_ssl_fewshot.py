"""Lesson 10's package code: episodes and prototypes (cvlab.fewshot), k-NN and rotation (cvlab.ssl)."""
from __future__ import annotations

import math

import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

import cvlab
from cvlab import fewshot, ssl, zeroshot


# --- episodes --------------------------------------------------------------------------------------

def test_episodes_draw_n_classes_k_shots_and_disjoint_queries():
    labels = torch.arange(10).repeat_interleave(30)[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    eps = list(fewshot.episodes(labels, n_way=5, k_shot=3, n_query=4, n_episodes=50, seed=1))
    assert len(eps) == 50
    for ep in eps:
        assert len(set(ep.classes.tolist())) == 5 and ep.support.shape == (15,) and ep.query.shape == (20,)
        assert not set(ep.support.tolist()) & set(ep.query.tolist())  # no query image in its support set
        assert torch.equal(labels[ep.support], ep.classes[ep.support_labels])  # episode labels point at the classes
        assert torch.equal(labels[ep.query], ep.classes[ep.query_labels])
        assert torch.equal(torch.bincount(ep.support_labels), torch.full((5,), 3))
    again = next(fewshot.episodes(labels, n_way=5, k_shot=3, n_query=4, n_episodes=1, seed=1))
    assert torch.equal(again.support, eps[0].support) and torch.equal(again.query, eps[0].query)
    assert len({tuple(ep.classes.tolist()) for ep in eps}) > 10  # the classes vary between episodes


def test_episodes_keep_to_the_given_classes_and_refuse_impossible_requests():
    labels = torch.arange(6).repeat_interleave(10)
    for ep in fewshot.episodes(labels, n_way=2, k_shot=1, n_query=2, n_episodes=20, classes=[4, 5]):
        assert sorted(ep.classes.tolist()) == [4, 5]
    with pytest.raises(ValueError, match="n_way=7 but only 6 classes"):
        next(fewshot.episodes(labels, n_way=7, k_shot=1))
    with pytest.raises(ValueError, match=r"k_shot \+ n_query = 11 images; these have fewer \(class: count\): \{0: 10"):
        next(fewshot.episodes(labels, n_way=2, k_shot=1, n_query=10))


# --- prototypes ------------------------------------------------------------------------------------

def test_prototypes_are_class_means_and_the_nearest_wins():
    feats = torch.tensor([[0., 0.], [2., 0.], [10., 10.], [12., 10.], [10., 12.]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    protos = fewshot.prototypes(feats, labels, 2)
    torch.testing.assert_close(protos, torch.tensor([[1., 0.], [32 / 3, 32 / 3]]))
    queries = torch.tensor([[1., 1.], [9., 9.]])
    logits = fewshot.prototype_logits(protos, queries)
    by_hand = -torch.tensor([[(1 - 1) ** 2 + 1 ** 2, (1 - 32 / 3) ** 2 * 2], [8 ** 2 + 9 ** 2, (9 - 32 / 3) ** 2 * 2]])
    torch.testing.assert_close(logits, by_hand)
    assert logits.argmax(1).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"classes \[2\] have none"):
        fewshot.prototypes(feats, labels, 3)
    with pytest.raises(ValueError, match="metric must be"):
        fewshot.prototype_logits(protos, queries, "manhattan")


def test_few_shot_evaluate_is_perfect_on_separated_features_and_at_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(25)
    separated = torch.nn.functional.one_hot(labels, 8).float() * 10 + torch.randn(200, 8, generator=g) * 0.1
    r = fewshot.evaluate(separated, labels, n_way=5, k_shot=1, n_query=5, n_episodes=30)
    assert r["accuracy"] == 1.0 and r["ci95"] == 0.0 and r["accuracies"].shape == (30,)
    noise = fewshot.evaluate(torch.randn(200, 8, generator=g), labels, n_way=5, k_shot=1, n_query=5, n_episodes=400)
    assert abs(noise["accuracy"] - 0.2) < 3 * noise["ci95"] + 0.01  # chance is 1 / n_way
    expected = 1.96 * noise["accuracies"].std().item() / 400 ** 0.5
    assert noise["ci95"] == pytest.approx(expected)


# --- k-NN and the pretext task ---------------------------------------------------------------------

def test_knn_predict_equals_scikit_learn():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(300, 16, generator=g), torch.randn(100, 16, generator=g)
    labels = torch.randint(0, 5, (300,), generator=g)
    for k in (1, 7, 20):
        ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(train.numpy(), labels.numpy())
        got = ssl.knn_predict(train, labels, test, k=k, batch_size=32)
        assert got.tolist() == ref.predict(test.numpy()).tolist()
    with pytest.raises(ValueError, match="k must be between 1 and the number of training features \\(300\\); got 0"):
        ssl.knn_predict(train, labels, test, k=0)


def test_rotation_task_turns_each_image_by_its_target():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 6, 6)
    turned, k = ssl.Rotation().prepare(x, None, True)
    assert turned.shape == x.shape and k.shape == (16,) and set(k.tolist()) <= {0, 1, 2, 3}
    for i in range(16):
        assert torch.equal(turned[i], x[i].rot90(int(k[i]), (1, 2)))
    val, k_val = ssl.Rotation().prepare(x, None, False)  # every image, all four ways
    assert val.shape == (64, 1, 6, 6) and k_val.tolist() == [0] * 16 + [1] * 16 + [2] * 16 + [3] * 16
    assert torch.equal(val[16 + 3], x[3].rot90(1, (1, 2)))
    with pytest.raises(ValueError, match="square images; got 6x8"):
        ssl.Rotation().prepare(torch.randn(2, 1, 6, 8), None, True)


def test_crop_views_are_flips_at_full_scale_and_zoomed_crops_below_it():
    torch.manual_seed(0)
    x = torch.rand(32, 1, 12, 12)
    same = ssl.crop_views(x, scale=(1.0, 1.0), jitter=0.0)  # the whole image: only the random flip is left
    flipped = [torch.allclose(v, i.flip(-1), atol=1e-5) for v, i in zip(same, x)]
    kept = [torch.allclose(v, i, atol=1e-5) for v, i in zip(same, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 4 < sum(flipped) < 28
    left = torch.zeros(4, 1, 12, 12)
    left[..., :6] = 1.0  # a bright left half: a crop of a quarter of the area shows a different share of it
    crops = ssl.crop_views(left, scale=(0.25, 0.25), jitter=0.0)
    assert crops.shape == left.shape and not torch.allclose(crops.mean((1, 2, 3)), left.mean((1, 2, 3)))


def test_with_projection_maps_pooled_features_to_the_embedding():
    encoder = cvlab.models.create("small_resnet", num_classes=0, in_chans=1, widths=(4, 8))
    model = ssl.WithProjection(encoder, dim=12)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 12)
    with pytest.raises(ValueError, match="num_features"):
        ssl.WithProjection(torch.nn.Conv2d(1, 4, 3))


# --- zero-shot: the miniature CLIP -------------------------------------------------------------------

def test_vocabulary_encodes_words_pads_and_marks_unknown_ones():
    vocab = zeroshot.Vocabulary(["A shoe, low", "a long coat"])
    assert vocab.words == ["<pad>", "<unk>", "a", "coat", "long", "low", "shoe"]
    assert vocab.encode(["a low shoe", "coat"]).tolist() == [[2, 5, 6], [3, 0, 0]]
    assert vocab.encode(["a sneaker"], length=4).tolist() == [[2, 1, 0, 0]]
    assert vocab.unknown(["a sneaker with laces"]) == ["laces", "sneaker", "with"]


def test_clip_loss_is_symmetric_and_equals_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    scale = torch.tensor(2.0)  # log of 1/τ
    logits = scale.exp() * img @ txt.T
    i2t = -torch.log_softmax(logits, 1).diagonal().mean()   # each image picks its own text
    t2i = -torch.log_softmax(logits, 0).diagonal().mean()   # each text picks its own image
    torch.testing.assert_close(zeroshot.clip_loss(img, txt, scale), (i2t + t2i) / 2)
    torch.testing.assert_close(zeroshot.clip_loss(img, txt, scale), zeroshot.clip_loss(txt, img, scale))  # symmetric
    torch.testing.assert_close(zeroshot.clip_loss(img, txt, scale, torch.eye(5)), (i2t + t2i) / 2)  # one-hot targets


def test_text_encoder_ignores_padding():
    torch.manual_seed(0)
    enc = zeroshot.TextEncoder(10, width=6).eval()
    a = enc(torch.tensor([[2, 3, 4]]))
    torch.testing.assert_close(enc(torch.tensor([[2, 3, 4, 0, 0]])), a)
    torch.testing.assert_close(enc(torch.tensor([[4, 2, 3]])), a)  # a bag of words: order does not matter


# --- on real data ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion():
    return cvlab.data.load("fashion_mnist", "train"), cvlab.data.load("fashion_mnist", "test")


def test_self_supervised_pretraining_beats_random_weights_on_knn_accuracy(fashion):
    # Label-free pretraining (an autoencoder: rebuild each image through an 8x7x7 bottleneck) must make the
    # encoder's neighbourhoods agree with the labels better than the same encoder with random weights.
    from cvlab.models.autoencoder import ConvAutoencoder
    train, test = fashion
    unlabelled = cvlab.data.subset(train, n=3000, seed=0)
    bank, queries = cvlab.data.subset(train, n=1000, seed=1), cvlab.data.subset(test, n=1000, seed=0)

    def knn(model):
        model.eval()
        with torch.no_grad():
            f_bank, f_query = (model.encoder(d.images.float() / 255).flatten(1) for d in (bank, queries))
        return ssl.knn_accuracy(f_bank, bank.labels, f_query, queries.labels, k=20)

    torch.manual_seed(0)
    model = ConvAutoencoder(in_chans=1)
    at_random = knn(model)
    cvlab.train.fit(model, (unlabelled.images, unlabelled.labels), epochs=15, task=cvlab.tasks.Reconstruction(),
                    optimizer="adamw", lr=2e-3, weight_decay=0.0, batch_size=128, progress=False)
    assert knn(model) > at_random + 0.01, (knn(model), at_random)


def test_miniature_clip_recognises_held_out_classes_from_text_alone(fashion):
    # Trained on 8 classes' captions; sneakers (7) and pullovers (2) are told apart from their prompts' words only.
    train, test = fashion
    held = torch.tensor([2, 7])
    seen_train = cvlab.data.subset(train.take(torch.nonzero(~torch.isin(train.labels, held))[:, 0]), n=4000, seed=0)
    captions = [c if i not in held else [] for i, c in enumerate(zeroshot.FASHION_MNIST_CAPTIONS)]
    vocab = zeroshot.Vocabulary([c for cs in captions for c in cs])
    prompts = [zeroshot.FASHION_MNIST_PROMPTS[c] for c in held]
    assert vocab.unknown(prompts) == []  # every word of the held-out prompts was learnt on other classes
    torch.manual_seed(0)
    encoder = cvlab.models.create("small_resnet", num_classes=0, in_chans=1, widths=(8, 16, 32, 64))
    model = zeroshot.ImageTextModel(encoder, zeroshot.TextEncoder(len(vocab)))
    with pytest.raises(ValueError, match="every class needs at least one caption"):
        zeroshot.ImageText(model, vocab, captions)
    captions = [c or ["unused"] for c in captions]  # no image of a held-out class is in training
    history = cvlab.train.fit(model, seen_train, epochs=4, task=zeroshot.ImageText(model, vocab, captions),
                              optimizer="adamw", lr=2e-3, weight_decay=0.01, batch_size=128, progress=False)
    assert history["train_pair_acc"][-1] > 0.5
    unseen = cvlab.data.subset(test.take(torch.nonzero(torch.isin(test.labels, held))[:, 0]), n=600, seed=0)
    probs = zeroshot.zero_shot(model, vocab, unseen.images, prompts)
    assert probs.shape == (600, 2) and torch.allclose(probs.sum(1), torch.ones(600))
    accuracy = (held[probs.argmax(1)] == unseen.labels).float().mean().item()
    assert accuracy > 0.8  # chance: 0.5


# --- edge cases a user hits off the lesson's path ----------------------------------------------------

def test_projections_size_themselves_from_what_a_headless_encoder_returns():
    # LeNet-5 without its classifier returns 84 pre-logits values, not its num_features (16).
    encoder = cvlab.models.create("lenet5", num_classes=0, in_chans=1)
    assert encoder.num_features != encoder.head_hidden_size
    x = torch.randn(2, 1, 28, 28)
    assert ssl.WithProjection(encoder, dim=8)(x).shape == (2, 8)
    assert zeroshot.ImageTextModel(encoder, zeroshot.TextEncoder(5), dim=8)(x).shape == (2, 8)


def test_rotation_refuses_a_model_without_four_outputs_and_tta():
    encoder = cvlab.models.create("small_resnet", num_classes=0, in_chans=1, widths=(4, 8))
    images = (torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="needs a model with 4 outputs .* gives 8. Use ssl.rotation_model"):
        cvlab.train.fit(encoder, images, epochs=1, task=ssl.Rotation(), batch_size=8, progress=False)
    model = ssl.rotation_model(encoder)
    assert model.cvlab_spec["num_classes"] == 4  # its checkpoints rebuild a 4-way model
    with pytest.raises(ValueError, match="tta averages predictions over mirrored and shifted images"):
        cvlab.train.fit(model, images, images, epochs=1, task=ssl.Rotation(), tta=True, batch_size=8, progress=False)
    assert cvlab.train.evaluate(model, images, task=ssl.Rotation())["accuracy"] >= 0  # without tta it runs


def test_clip_loss_caps_the_temperature_and_validation_captions_are_fixed():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    torch.testing.assert_close(zeroshot.clip_loss(img, txt, torch.tensor(50.0)),
                               zeroshot.clip_loss(img, txt, torch.tensor(math.log(100))))  # 1/τ at most 100
    vocab = zeroshot.Vocabulary(["a b", "c d", "e f"])
    model = zeroshot.ImageTextModel(cvlab.models.create("small_resnet", num_classes=0, in_chans=1, widths=(4, 8)),
                                    zeroshot.TextEncoder(len(vocab)))
    task = zeroshot.ImageText(model, vocab, [["a b", "c d"], ["e f"]])
    y = torch.tensor([0, 1, 0, 1])
    first = task.prepare(None, y, False)[1][0]
    assert torch.equal(first, task.prepare(None, y, False)[1][0]) and torch.equal(first[0], vocab.encode(["a b"])[0])


def test_few_shot_refuses_zero_episodes():
    with pytest.raises(ValueError, match="n_episodes >= 1"):
        fewshot.evaluate(torch.randn(40, 3), torch.arange(4).repeat_interleave(10), n_way=2, n_query=2, n_episodes=0)
