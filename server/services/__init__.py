"""What Satchel does, apart from how it is asked (HTTP, WebSocket): each module one job."""
