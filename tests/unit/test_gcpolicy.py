"""While a broker serves, full collections are rare; the process's thresholds come back
when the last broker in it stops, however they nest."""

import gc

from backend_stub.gcpolicy import few_full_collections


def test_full_collections_are_rare_while_serving_and_the_thresholds_come_back():
    before = gc.get_threshold()
    with few_full_collections():
        assert gc.get_threshold()[2] >= 1000 and gc.get_threshold()[:2] == before[:2]
        with few_full_collections():  # a second broker in the same process
            assert gc.get_threshold()[2] >= 1000
        assert gc.get_threshold()[2] >= 1000  # the first one still serves
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
