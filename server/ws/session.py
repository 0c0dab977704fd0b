"""A WebSocket session's states and what each incoming frame may do in them, sans I/O.

    AWAIT_HELLO --hello ok--> OPEN --close/error--> CLOSED
         |                                            ^
         +------------- anything else ----------------+

``SessionState.receive(frame)`` either returns the frame for the endpoint to handle or raises
``ProtocolError`` saying how to answer (error frame, or close code). Limits on subscriptions and
requests in flight are counted here, so they are enforced the same way for every handler.
"""

from __future__ import annotations

from enum import Enum

from server.core.errors import ErrorCode
from server.ws.protocol import (
    INLINE,
    MAX_IN_FLIGHT,
    MAX_SUBSCRIPTIONS,
    REQUESTS,
    CloseCode,
    Frame,
    MsgType,
    ProtocolError,
)


class State(Enum):
    AWAIT_HELLO = "await_hello"
    OPEN = "open"
    CLOSED = "closed"


#: Which state each event leads to; anything not here is an illegal transition.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAIT_HELLO, "welcomed"): State.OPEN,
    (State.AWAIT_HELLO, "closed"): State.CLOSED,
    (State.OPEN, "closed"): State.CLOSED,
    (State.CLOSED, "closed"): State.CLOSED,
}


class SessionState:
    def __init__(self) -> None:
        self.state = State.AWAIT_HELLO
        self.in_flight = 0
        self.subscriptions: set[int] = set()

    def _move(self, event: str) -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise RuntimeError(f"illegal session transition: {event} in {self.state.value}") from None

    def welcomed(self) -> None:
        self._move("welcomed")

    def closed(self) -> None:
        self._move("closed")

    def receive(self, frame: Frame) -> Frame:
        """Check *frame* against the state and limits; return it for handling or raise."""
        if self.state is State.CLOSED:
            raise ProtocolError("the session is closed", close=CloseCode.normal)
        if self.state is State.AWAIT_HELLO:
            if frame.type is not MsgType.hello:
                raise ProtocolError("the first frame must be hello", close=CloseCode.bad_frame,
                                    request_id=frame.id)
            return frame
        if frame.type not in REQUESTS:
            raise ProtocolError(f"{frame.type.name} is not a message a client sends", request_id=frame.id)
        if frame.type is MsgType.hello:
            raise ProtocolError("hello was already received", request_id=frame.id)
        if frame.type in (MsgType.ping, MsgType.pong) or frame.type in INLINE:
            return frame  # handled by the reader itself, in order: never in flight
        if self.in_flight >= MAX_IN_FLIGHT:
            raise ProtocolError(f"at most {MAX_IN_FLIGHT} requests may be in flight",
                                ErrorCode.too_many_requests, request_id=frame.id)
        if frame.type is MsgType.subscribe:
            ns = frame.body.get("ns")
            # ns is unchecked peer input (maybe a list: unhashable); the handler validates it.
            known = isinstance(ns, int) and ns in self.subscriptions
            if not known and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                raise ProtocolError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection",
                                    ErrorCode.too_many_requests, request_id=frame.id)
        return frame

    def started(self) -> None:
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight -= 1
