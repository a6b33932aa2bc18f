"""Error codes, atomic files and the task decorator."""

import pytest

from core.errors import ErrorCode, NotFound, ServiceError
from core.files import TEMP_PREFIX, atomic_output_dir, atomic_write_bytes, leftovers_remove
from core.tasks import task


def test_every_code_carries_one_status():
    assert {code.status for code in ErrorCode} <= {400, 403, 404, 409, 413, 429}
    assert ServiceError("x", code="not_found").status == 404  # a string converts to its member
    assert NotFound("x").code is ErrorCode.NOT_FOUND
    assert ServiceError("x").code is ErrorCode.INVALID
    with pytest.raises(ValueError):
        ServiceError("x", code="made_up")  # no free-form codes


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        from core.files import atomic_output_file

        with atomic_output_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise Boom
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_leftovers_of_one_job_do_not_touch_a_neighbour(tmp_path):
    final = tmp_path / "1"
    (tmp_path / f"{TEMP_PREFIX}1-abc").mkdir()  # a crashed attempt of job 1
    (tmp_path / f"{TEMP_PREFIX}12-def").mkdir()  # job 12, still writing
    final.mkdir()  # renamed into place just before a crash
    leftovers_remove(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{TEMP_PREFIX}12-def"]
    with atomic_output_dir(final) as tmp:
        (tmp / "weights").write_bytes(b"w")
    assert (final / "weights").read_bytes() == b"w"


def test_the_task_decorator_sets_the_house_options():
    @task(time_limit_s=60)
    def sample_task(job_id: int) -> int:
        return job_id * 2

    assert sample_task.name.endswith("test_errors_files_tasks.sample_task")
    assert sample_task.acks_late and sample_task.reject_on_worker_lost
    assert (sample_task.soft_time_limit, sample_task.time_limit) == (60, 360)
    assert sample_task.run(21) == 42
