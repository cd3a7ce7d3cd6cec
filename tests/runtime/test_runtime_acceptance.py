from __future__ import annotations

import pytest

from teleway.core.accept import SubmissionRejected
from teleway.core.model import Account, Content, Origin, Recipient, Submission
from teleway.runtime.acceptance import Acceptor
from teleway.runtime.metrics import Metrics
from teleway.testing.fakes import FakeClock, InMemoryStore, SequentialIds


def submission(number: str) -> Submission:
    return Submission(
        account=Account(id=1, name="a"),
        origin=Origin.SMPP,
        submitter="esme1",
        recipients=(Recipient(number=number),),
        content=Content(text="hi"),
    )


async def test_acceptor_counts_accepted_and_rejected() -> None:
    metrics = Metrics()
    acceptor = Acceptor(
        store=InMemoryStore(), clock=FakeClock(), ids=SequentialIds(), metrics=metrics
    )
    await acceptor.accept(submission("+17816170000"))
    with pytest.raises(SubmissionRejected):
        await acceptor.accept(submission("not a number"))
    text = metrics.render().decode()
    assert 'teleway_messages_accepted_total{origin="smpp"} 1.0' in text
    assert 'teleway_submissions_rejected_total{origin="smpp"} 1.0' in text
    assert 'teleway_accept_seconds_count{origin="smpp"} 1.0' in text
