"""A short list of common English words: part of the corpus the byte-level BPE tokenizers are trained
on, so that ordinary prompt words are single tokens (the Qwen-Image- and HunyuanVideo-class models)."""

COMMON_WORDS: list[str] = """
the of and to in is it that for on with as was at by this be from or an are not have but what all were
when we there can your which their said if do will each about how up out them then she many some so
these would other into has more her two like him see time could no make than first been its who now
people my made over did down only way find use may water long little very after words called just where
most know get through back much before go good new write our used me man too any day same right look
think also around another came come work three word must because does part picture photo image drawing
small large big tiny huge bright dark light colour color shape object below under beside next near right
behind front top bottom center middle orange pink black grey gray brown cyan star heart cross line dot
ring box ball cube cat dog tree house sky sun
""".split()  # noqa: SIM905 (one word list, not 174 lines)
