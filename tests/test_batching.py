"""Batch sizes follow the measured time per item."""

from dask_runners.batching import MAX_BATCH, MIN_WINDOW, TARGET_TASK_SECONDS, BatchSizer


def test_the_first_tasks_carry_one_item_each_to_measure():
    sizer = BatchSizer(threads=4, total=1000)
    assert sizer.batch_size(0) == 1 and sizer.window(1) == MIN_WINDOW


def test_tiny_items_are_amortised_over_the_round_trips():
    sizer = BatchSizer(threads=2, total=20_000)
    sizer.observe(4, 4e-6)  # 1 microsecond an item
    assert sizer.batch_size(4) == (20_000 - 4) // 4  # an even share over two tasks per thread, not the 10 000 cap
    sizer = BatchSizer(threads=2)  # an unknown number of items
    sizer.observe(4, 4e-6)
    assert sizer.batch_size(4) == MAX_BATCH and sizer.window(MAX_BATCH) >= 2 * MAX_BATCH * 2


def test_ten_ms_items_go_about_a_fifth_of_a_second_to_a_task():
    sizer = BatchSizer(threads=8, total=100_000)
    sizer.observe(1, 0.010)
    assert sizer.batch_size(8) == round(TARGET_TASK_SECONDS / 0.010)


def test_slow_items_go_one_by_one_and_the_end_spreads_over_every_thread():
    sizer = BatchSizer(threads=4, total=16)
    sizer.observe(1, 1.0)
    assert sizer.batch_size(4) == 1
    fast = BatchSizer(threads=4, total=100)
    fast.observe(10, 0.001)
    assert fast.batch_size(96) == 1  # four left for four threads


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
