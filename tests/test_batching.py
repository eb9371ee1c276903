"""Batch sizes follow the measured time per item."""

from dask_runners.batching import MAX_BATCH, MIN_WINDOW, TARGET_TASK_SECONDS, BatchSizer


def test_the_first_tasks_carry_one_item_each_to_measure():
    sizer = BatchSizer(threads=4, total=1000)
    assert sizer.batch_size(0) == 1 and sizer.window(1) == MIN_WINDOW


def test_tiny_items_are_amortised_over_the_round_trips():
    sizer = BatchSizer(threads=2, total=20_000)
    sizer.observe(4, 4e-6)  # 1 microsecond an item: 50 ms of work would be 50 000 of them
    assert sizer.batch_size(4) == MAX_BATCH
    sizer = BatchSizer(threads=2, total=200_000)
    sizer.observe(4, 4e-4)  # 0.1 ms an item: 2000 make a task of 0.2 s
    assert sizer.batch_size(4) == round(TARGET_TASK_SECONDS / 1e-4)
    assert sizer.window(MAX_BATCH) >= 2 * MAX_BATCH * 2


def test_ten_ms_items_go_about_a_fifth_of_a_second_to_a_task():
    sizer = BatchSizer(threads=8, total=100_000)
    sizer.observe(1, 0.010)
    assert sizer.batch_size(8) == round(TARGET_TASK_SECONDS / 0.010)


def test_slow_items_go_one_by_one_and_the_end_spreads_over_every_thread():
    sizer = BatchSizer(threads=4, total=16)
    sizer.observe(1, 1.0)
    assert sizer.batch_size(4) == 1
    ten_ms = BatchSizer(threads=8, total=1600)
    ten_ms.observe(20, 0.2)
    assert ten_ms.batch_size(0) == 20  # 0.2 s of work
    assert ten_ms.batch_size(1600 - 160) == 10  # an even share of the last 160 over 16 tasks
    assert ten_ms.batch_size(1600 - 20) == 5  # but never under 50 ms of work, a round trip's worth


def test_an_explicit_bound_on_items_in_flight_holds():
    sizer = BatchSizer(threads=2, total=10_000, max_in_flight=40)
    sizer.observe(100, 0.0001)
    size = sizer.batch_size(0)
    assert size == 10 and sizer.window(size) == 40


def test_the_estimate_follows_a_change_in_the_items():
    sizer = BatchSizer(threads=1)
    sizer.observe(1, 1.0)
    for _ in range(40):
        sizer.observe(100, 0.1)
    assert abs(sizer.item_seconds - 0.001) < 1e-4
