"""Run under torchrun by tests/test_distributed.py: a few DDP training steps of a tiny model, then rank 0
writes whether the ranks' EMA weights are identical and their noise differs (argv[1]: the JSON path)."""
import copy
import json
import sys

import torch
import torch.distributed as dist

from plumbing import distributed
from dae import DAEConfig, DiffusionAutoencoder
from unet import UNetConfig

rank, world, device = distributed.setup(torch.device("cpu"))
torch.manual_seed(0)
net = UNetConfig(image_size=16, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                 z_dim=32, enc_channel_mult=(1, 2), enc_num_res_blocks=1)
model = DiffusionAutoencoder(DAEConfig(net=net))
ema = copy.deepcopy(model).requires_grad_(False)
seen = []
model.decoder.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach().clone()))  # x_t
loss_fn = torch.nn.parallel.DistributedDataParallel(distributed.LossModule(model))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1  # the same images on every rank
for step in range(3):  # train.py's step: each rank its slice of the global batch's t and eps
    t = distributed.global_draw(torch.rand, 4, (rank, world))
    loss, _ = loss_fn(x0, 0, t, distributed.global_randn(x0, (rank, world)))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 0.1)
ema_flat = torch.cat([p.flatten() for p in ema.parameters()])
gathered = [None] * world
dist.all_gather_object(gathered, (ema_flat, seen[0]))
if rank == 0:
    emas, x_ts = zip(*gathered)
    json.dump({"ema_identical": all(torch.equal(emas[0], e) for e in emas),
               "noise_differs": not torch.allclose(x_ts[0], x_ts[1])}, open(sys.argv[1], "w"))
distributed.cleanup()
