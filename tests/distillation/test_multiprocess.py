"""torchrun --nproc_per_node 2 (gloo, CPU) on train_student: one run, evaluated once, the steps of one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection

from distillation.models import Prediction, StudentRun
from evalsite.models import Job

ROOT = Path(__file__).resolve().parents[2]
# Dropout off, so that a step is a pure function of the weights and the step's questions.
TRAINING = [
    "--method", "mtcf", "--data", "revised", "--seed", "5", "--student", "tiny", "--max-steps", "4",
    "--batch-size", "4", "--max-tokens", "64", "--dropout", "0", "--eval-every", "2", "--checkpoint-every", "2",
    "--eval-limit", "8", "--lr", "1e-3", "--quiet",
]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_torchrun_with_two_processes_makes_one_run_with_the_steps_of_one_process(teacher_data, settings, tmp_path):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
        "DEBUG": "1",
        # The subprocesses write to this test's database, which a transactional test lets them see.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "EVALSITE_ARTIFACTS_DIR": str(settings.EVALSITE_ARTIFACTS_DIR),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("REDIS_URL", None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    command += ["manage.py", "train_student", *TRAINING]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    # The launcher's own report comes last; the ranks' tracebacks come before it.
    tracebacks = [
        part
        for part in done.stderr.split("Traceback (most recent call last):")[1:]
        if "torch/distributed/run.py" not in part[:400]
    ]
    assert done.returncode == 0, (tracebacks[0] if tracebacks else done.stderr)[-5000:]

    run = StudentRun.objects.get()
    assert run.status == StudentRun.Status.EVALUATED and run.metrics["steps"] == 4
    assert Prediction.objects.filter(student_run=run).count() == 8
    assert Job.objects.filter(kind="student_training").count() == 1
    assert done.stdout.count(f"Student run {run.pk} (MT+CF:Revised, seed 5): 4 steps") == 1
    assert [p["step"] for p in run.metrics["validation"] if p["accuracy"] is not None] == [2, 4]
    assert len(list(Path(settings.EVALSITE_ARTIFACTS_DIR, "students").iterdir())) == 1

    call_command("train_student", *TRAINING, stdout=StringIO())
    alone = StudentRun.objects.exclude(pk=run.pk).get()
    assert alone.status == StudentRun.Status.EVALUATED
    assert np.allclose(run.metrics["loss_history"], alone.metrics["loss_history"], atol=1e-3, rtol=0)
    assert len(set(run.metrics["loss_history"])) == 4  # it trained: every step's loss differs
    sharded = [p["accuracy"] for p in run.metrics["validation"]]
    assert sharded == [p["accuracy"] for p in alone.metrics["validation"]]
