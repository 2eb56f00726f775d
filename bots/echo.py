"""The echo bot: repeats what you text it. Run it with

SMS_ADAPTER_BOTS=bots.echo:router sms-adapter dev
"""

from adapter import Context, Keyword, Router

router = Router("echo")


@router.message(Keyword("HELP"))
async def help_(ctx: Context) -> None:
    await ctx.reply("Text me anything and I'll echo it.")


@router.message()
async def echo(ctx: Context) -> None:
    await ctx.reply(f"You said: {ctx.text}")
