"""A help desk: looks up orders, opens tickets, remembers your name. Run it with

    SMS_ADAPTER_BOTS=bots.help_desk:router sms-adapter dev

and text it HELP. It shows keywords, filters combined with |, a regex whose groups the
handler reads from ctx.match, per-person state (ctx.state is saved after every text),
photos, a fallback, and a status handler for replies that could not be delivered.
"""

import logging
import re

from adapter import Context, HasMedia, Keyword, Regex, Router, StatusUpdate
from adapter.twilio.opt_out import KEYWORDS, OptOutType

router = Router("help_desk")
logger = logging.getLogger(__name__)

# A stand-in for your order system.
ORDERS = {"1001": "shipped on Monday", "1002": "being packed", "1003": "delivered"}

MENU = (
    "Text ORDER 1001 to track an order, TICKET and your problem to open a ticket, "
    "TICKETS to list yours, or MY NAME IS and your name."
)
# Twilio's opt-out keywords (STOP, UNSUBSCRIBE, OPTOUT...): they reach bots only with
# SMS_ADAPTER_OPT_OUT_TO_BOTS on.
STOP_WORDS = [word for word, kind in KEYWORDS.items() if kind is OptOutType.STOP]


def _name(ctx: Context) -> str:
    return f", {ctx.state['name']}" if "name" in ctx.state else ""


@router.message(Keyword(*STOP_WORDS))
async def opted_out(ctx: Context) -> None:
    # No reply: Twilio confirms the opt-out itself and blocks texts to the person.
    ctx.state.clear()


@router.message(Keyword("HELP", "MENU", "HI", "HELLO") | Regex(r"^what can you do", re.I))
async def menu(ctx: Context) -> None:
    await ctx.reply(f"Hi{_name(ctx)}! {MENU}")


@router.message(Regex(r"^\s*my name is\s+(\w+)", re.IGNORECASE))
async def remember_name(ctx: Context) -> None:
    ctx.state["name"] = ctx.match.group(1).capitalize()
    await ctx.reply(f"Nice to meet you{_name(ctx)}!")


@router.message(Regex(r"\border\s*#?\s*(\d+)", re.IGNORECASE))
async def track_order(ctx: Context) -> None:
    number = ctx.match.group(1)
    status = ORDERS.get(number)
    if status is None:
        await ctx.reply(f"We can't find order #{number}: check the number on your receipt.")
    else:
        await ctx.reply(f"Order #{number} is {status}.")


@router.message(Keyword("TICKETS"))
async def list_tickets(ctx: Context) -> None:
    tickets = ctx.state.get("tickets", [])
    if not tickets:
        await ctx.reply("You have no tickets. Text TICKET and your problem to open one.")
        return
    await ctx.reply("\n".join(f"#{t['number']}: {t['problem']}" for t in tickets))


@router.message(Regex(r"^\s*ticket\s+(.+)", re.IGNORECASE | re.DOTALL))
async def open_ticket(ctx: Context) -> None:
    number = ctx.state.get("last_ticket", 0) + 1
    ctx.state["last_ticket"] = number
    ticket = {"number": number, "problem": ctx.match.group(1).strip(), "photos": []}
    ctx.state.setdefault("tickets", []).append(ticket)
    await ctx.reply(f"Ticket #{number} is open{_name(ctx)}. Send a photo to add it.")


@router.message(HasMedia())
async def add_photo(ctx: Context) -> None:
    tickets = ctx.state.get("tickets", [])
    if not tickets:
        await ctx.reply("Thanks for the photo! Text TICKET and your problem first.")
        return
    tickets[-1]["photos"] += [media.url for media in ctx.message.media]
    await ctx.reply(f"Added to ticket #{tickets[-1]['number']}.")


@router.message()
async def fallback(ctx: Context) -> None:
    await ctx.reply(f"Sorry{_name(ctx)}, I didn't get that. Text HELP for the menu.")


@router.status("failed", "undelivered")
async def not_delivered(update: StatusUpdate) -> None:
    logger.warning("reply %s was not delivered (error %s)", update.message_sid, update.error_code)
