import itertools

import pytest
import torch

from tokenizer_cli.config import QuantizerConfig
from tokenizer_cli.quantizers import FSQ, VQ, JointMVQ, build_quantizer
from tokenizer_cli.quantizers.masks import mask_configurations


@pytest.mark.parametrize("levels", [[8, 6, 5], [5, 3], [8, 5, 5, 5], [7, 5, 5, 5, 5]])
def test_fsq_matches_vector_quantize_pytorch(levels):
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    z = torch.randn(4, 9, len(levels)) * 2
    ref = vqp.FSQ(levels)
    ref_codes, ref_indices = ref(z)
    out = FSQ(levels)(z)
    assert torch.allclose(out.z_q, ref_codes, atol=1e-6)
    assert torch.equal(out.indices, ref_indices.long())
    assert torch.allclose(FSQ(levels).indices_to_codes(ref_indices), ref.indices_to_codes(ref_indices), atol=1e-6)


def test_fsq_implicit_codebook_is_a_bijection():
    fsq = FSQ([5, 3])
    ids = torch.arange(fsq.vocab_size)
    codes = fsq.indices_to_codes(ids)
    assert torch.equal(fsq.codes_to_indices(codes), ids)
    assert codes.unique(dim=0).shape[0] == 15
    assert codes.abs().max() <= 1


@pytest.mark.parametrize("kind", ["vq", "fsq", "mvq", "mvq-joint"])
def test_index_code_round_trip(kind):
    torch.manual_seed(0)
    q = build_quantizer(QuantizerConfig(kind=kind, dim=6, num_codes=8, mask_bits=3, levels=[4, 3, 5]))
    d = q.dim if kind == "fsq" else 6
    z = torch.randn(3, 5, d)
    q.train()
    q(z)  # data init
    q.eval()
    out = q(z)
    assert out.indices.shape == (3, 5) and out.indices.dtype == torch.int64
    assert out.indices.min() >= 0 and out.indices.max() < q.vocab_size
    codes = q.indices_to_codes(out.indices) if out.masks is None else q.indices_to_codes(out.indices, out.masks)
    assert torch.allclose(codes, out.z_q, atol=1e-5)


@pytest.mark.parametrize("kind", ["vq", "fsq", "mvq", "mvq-joint"])
def test_straight_through_gradient_reaches_encoder(kind):
    q = build_quantizer(QuantizerConfig(kind=kind, dim=4, num_codes=8, mask_bits=2, levels=[3, 3, 3, 3]))
    z = torch.randn(2, 3, 4, requires_grad=True)
    out = q(z)
    (out.z_q.sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_vq_initialises_from_data_and_ema_moves_codes_toward_latents():
    torch.manual_seed(0)
    vq = VQ(num_codes=4, dim=2, decay=0.5, dead_threshold=0.0)
    z = torch.randn(1, 64, 2) + 10  # far away from the randn init
    vq.train()
    vq(z)
    assert (vq.codebook - 10).abs().max() < 5, "codebook was not initialised from the data"
    target = torch.tensor([[3.0, -3.0]]).expand(64, 2).reshape(1, 64, 2)
    before = (vq.codebook - target[0, 0]).norm(dim=1)
    idx = vq(target).indices.unique()
    after = (vq.codebook - target[0, 0]).norm(dim=1)
    assert (after[idx] < before[idx]).all()
    unused = [k for k in range(4) if k not in idx.tolist()]
    assert torch.allclose(after[unused], before[unused], atol=1e-4) or not unused


def test_vq_revives_dead_codes():
    torch.manual_seed(0)
    vq = VQ(num_codes=16, dim=2, dead_threshold=0.5)
    vq.train()
    cluster = torch.randn(1, 256, 2) * 0.01 + 5
    vq(torch.randn(1, 256, 2))  # init spread out
    vq.codebook[1:] += 1000.0  # make 15 codes unreachable
    vq.embed_sum[1:] += 1000.0
    for _ in range(50):
        vq(cluster)
    assert (vq.codebook - 5).norm(dim=1).max() < 1, "dead codes were not moved onto the data"
    vq.eval()
    assert vq(cluster).indices.unique().numel() > 1


def test_mvq_mask_configurations():
    masks = mask_configurations(4, 15)
    assert masks.shape == (15, 4)
    assert set(map(tuple, masks.tolist())) == {m for m in itertools.product((0.0, 1.0), repeat=4) if any(m)}
    assert masks.sum(1).tolist() == sorted(masks.sum(1).tolist()), "fewest ones first"
    assert mask_configurations(4, 5).shape == (5, 4)


def test_joint_mvq_has_m_distinct_hypotheses_per_code():
    torch.manual_seed(0)
    q = JointMVQ(num_codes=5, dim=8, mask_bits=3)
    h = q.hypotheses()
    assert q.num_masks == 7 and q.vocab_size == 35
    assert h.shape == (5, 7, 8)
    for k in range(5):
        assert torch.cdist(h[k], h[k]).add(torch.eye(7) * 1e9).min() > 1e-4


def test_joint_mvq_decode_of_encode_is_the_nearest_hypothesis():
    torch.manual_seed(0)
    q = JointMVQ(num_codes=6, dim=4, mask_bits=3).eval()
    z = torch.randn(2, 10, 4)
    out = q(z)
    points = q.hypotheses().reshape(-1, 4)
    nearest = torch.cdist(z.reshape(-1, 4), points).argmin(1)
    assert torch.equal(out.indices.reshape(-1), nearest)
    assert torch.allclose(q.indices_to_codes(out.indices).reshape(-1, 4), points[nearest], atol=1e-6)


def test_joint_mvq_only_the_winner_gets_codebook_gradient():
    torch.manual_seed(0)
    q = JointMVQ(num_codes=6, dim=4, mask_bits=2, subset_ratio=1.0)
    q.initted.fill_(True)  # keep the random codebook
    q.train()
    z = q.hypotheses().detach()[2, 1][None, None] + 0.01  # a latent next to code 2
    out = q(z)
    out.loss.backward()
    assert out.indices.item() // q.num_masks == 2
    grad_rows = q.codebook.grad.abs().sum(1)
    assert grad_rows[2] > 0
    assert torch.all(grad_rows[[0, 1, 3, 4, 5]] == 0)


def test_joint_mvq_training_uses_a_random_subset_of_masks():
    torch.manual_seed(0)
    q = JointMVQ(num_codes=1, dim=4, mask_bits=4, subset_ratio=0.2)
    q.initted.fill_(True)
    z = q.hypotheses().detach()[0, 0].expand(400, 4)[None]  # every latent sits on mask 0 of code 0
    q.train()
    train_ids = q(z).indices
    q.eval()
    assert torch.all(q(z).indices == 0)
    share = (train_ids == 0).float().mean().item()
    assert 0.1 < share < 0.35, "mask 0 should be in the sampled subset about 20% of the time"


def test_joint_mvq_code_first_winner_picks_among_the_nearest_code_vectors_masks():
    torch.manual_seed(0)
    q = JointMVQ(num_codes=8, dim=4, mask_bits=3, winner="code")
    q.initted.fill_(True)
    z = torch.randn(1, 300, 4) * 2
    q.train()
    ids = q(z).indices.reshape(-1)
    nearest_code = torch.cdist(z.reshape(-1, 4), q.codebook.detach()).argmin(1)
    assert torch.equal(ids // q.num_masks, nearest_code)
    hyp = q.hypotheses().detach()[nearest_code]  # (N, M, D): the nearest code's hypotheses
    assert torch.equal(ids % q.num_masks, (hyp - z.reshape(-1, 1, 4)).pow(2).sum(-1).argmin(1))
    q.winner = "all"
    all_ids = q(z).indices.reshape(-1)
    assert not torch.equal(all_ids, ids), "with 'all' some latents should pick another code's hypothesis"
    q.eval()  # encoding ignores the training rule
    points = q.hypotheses().reshape(-1, 4)
    assert torch.equal(q(z).indices.reshape(-1), torch.cdist(z.reshape(-1, 4), points).argmin(1))


def test_joint_mvq_revives_dead_codes():
    torch.manual_seed(0)
    q = JointMVQ(num_codes=8, dim=2, mask_bits=2, dead_threshold=0.5)
    q.train()
    q(torch.randn(1, 64, 2))
    with torch.no_grad():
        q.codebook[1:] += 1000.0
    cluster = torch.randn(1, 128, 2) * 0.01 + 3
    for _ in range(60):
        q(cluster)
    assert (q.codebook - 3).norm(dim=1).max() < 10


@pytest.mark.parametrize("n", [0, 5, 4096, 9001])
def test_nearest_codes_in_chunks_picks_what_full_distances_pick(n):
    from tokenizer_cli.quantizers.base import nearest_codes, squared_distances

    g = torch.Generator().manual_seed(n)
    z, codes = torch.randn(n, 8, generator=g), torch.randn(300, 8, generator=g)
    got = nearest_codes(z, codes, chunk=4096)
    assert got.shape == (n,) and got.dtype == torch.long
    if n:
        assert torch.equal(got, squared_distances(z, codes).argmin(1))


def test_vq_ema_update_counts_by_index_and_plain_vq_never_restarts():
    from tokenizer_cli.quantizers.vq import VQ

    torch.manual_seed(0)
    z = torch.randn(64, 1, 4)
    for threshold, restarts in ((0.03, True), (0.0, False)):
        vq = VQ(32, 4, dead_threshold=threshold)
        vq.train()
        vq(z)  # data init; most of 32 codes get no latent of a 64-row batch that lies near a few
        vq.codebook[1:] = 100.0  # every latent now picks code 0: the other 31 die
        vq.embed_sum[1:] = 100.0 * vq.cluster_size[1:, None]  # (the EMA state that the codebook is made of)
        for _ in range(400):  # a code is dead once its EMA use is under 3% of a fair share: ~290 steps here
            vq(z)
        in_use = vq.nearest(z.reshape(-1, 4)).unique().numel()
        assert (in_use > 1) == restarts, (threshold, in_use)  # restarts bring dead codes back beside the latents
        if not restarts:  # the EMA of 64 hits a step, from 32 ones after the data init, over 401 updates
            assert vq.cluster_size.sum().item() == pytest.approx(64 + (32 - 64) * 0.99**401, rel=1e-4)
