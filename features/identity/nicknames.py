"""Common English given-name variants, mapped to one canonical form.

Names are compared after this mapping so that Bill and William agree exactly. The table is ours
(public, general knowledge), not the simulator's; a user can extend it in config.
"""

from __future__ import annotations

_GROUPS: dict[str, tuple[str, ...]] = {
    "william": ("bill", "billy", "will", "willy", "liam"),
    "robert": ("bob", "bobby", "rob", "robbie", "bert"),
    "richard": ("dick", "rick", "ricky", "rich", "richie"),
    "james": ("jim", "jimmy", "jamie"),
    "john": ("jack", "johnny", "jon"),
    "joseph": ("joe", "joey"),
    "thomas": ("tom", "tommy"),
    "michael": ("mike", "mick", "mikey", "micky"),
    "christopher": ("chris", "kit"),
    "daniel": ("dan", "danny"),
    "matthew": ("matt", "matty"),
    "anthony": ("tony", "ant"),
    "andrew": ("andy", "drew"),
    "edward": ("ed", "eddie", "ted", "ned"),
    "benjamin": ("ben", "benny"),
    "samuel": ("sam", "sammy"),
    "alexander": ("alex", "sandy", "xander"),
    "nicholas": ("nick", "nicky"),
    "jonathan": ("jonny",),
    "timothy": ("tim", "timmy"),
    "stephen": ("steve", "stevie", "steven"),
    "david": ("dave", "davy"),
    "peter": ("pete",),
    "charles": ("charlie", "chuck", "chaz"),
    "henry": ("harry", "hal", "hank"),
    "frederick": ("fred", "freddie", "freddy"),
    "patrick": ("pat", "paddy"),
    "gregory": ("greg",),
    "kenneth": ("ken", "kenny"),
    "raymond": ("ray",),
    "lawrence": ("larry", "laurie"),
    "leonard": ("len", "lenny", "leo"),
    "ronald": ("ron", "ronnie"),
    "donald": ("don", "donnie"),
    "douglas": ("doug",),
    "gerald": ("gerry", "jerry"),
    "philip": ("phil", "pip"),
    "oliver": ("ollie", "olly"),
    "zachary": ("zach", "zack"),
    "joshua": ("josh",),
    "nathan": ("nate",),
    "nathaniel": ("nat",),
    "elizabeth": ("liz", "lizzie", "beth", "betty", "eliza", "libby", "bess", "lisa", "elise"),
    "margaret": ("maggie", "meg", "peggy", "marge", "greta", "madge"),
    "katherine": ("kate", "katie", "kathy", "kat", "kitty", "catherine", "kathryn", "cathy"),
    "jennifer": ("jen", "jenny"),
    "rebecca": ("becky", "becca"),
    "deborah": ("deb", "debbie"),
    "victoria": ("vicky", "tori", "vic"),
    "alexandra": ("alex", "lexi", "sasha", "sandra"),
    "samantha": ("sam", "sammie"),
    "susan": ("sue", "susie", "suzy"),
    "patricia": ("pat", "patty", "trish", "tricia"),
    "christine": ("chris", "chrissy", "tina", "christina"),
    "jessica": ("jess", "jessie"),
    "abigail": ("abby", "abi"),
    "dorothy": ("dot", "dottie", "dolly"),
    "eleanor": ("ellie", "nell", "nora", "elle"),
    "helen": ("nell", "nellie"),
    "josephine": ("jo", "josie"),
    "amanda": ("mandy",),
    "barbara": ("barb", "babs"),
    "caroline": ("carrie", "caro"),
    "charlotte": ("lottie", "charlie"),
    "emily": ("em", "emmy"),
    "emma": ("em",),
    "florence": ("flo", "florrie"),
    "frances": ("fran", "frankie"),
    "isabella": ("bella", "izzy", "isabel"),
    "jacqueline": ("jackie",),
    "judith": ("judy", "jude"),
    "kimberly": ("kim",),
    "lucy": ("lu",),
    "mary": ("molly", "polly", "mae"),
    "natalie": ("nat",),
    "pamela": ("pam",),
    "sarah": ("sally", "sadie", "sara"),
    "theresa": ("tess", "tessa", "terri"),
    "valerie": ("val",),
    "wilhelmina": ("mina", "billie"),
    "gwendolyn": ("gwen",),
    "penelope": ("penny",),
    "sophia": ("sophie",),
    "olivia": ("liv", "livvy"),
    "georgina": ("georgie", "gina"),
}


def nickname_table(extra: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """Every variant -> its canonical name. Ambiguous variants (Alex, Sam, Pat, Chris) map to
    the first group listed, which is harmless: both sides of a comparison map the same way."""
    table: dict[str, str] = {}
    for canonical, variants in {**_GROUPS, **(extra or {})}.items():
        table.setdefault(canonical, canonical)
        for variant in variants:
            table.setdefault(variant, canonical)
    return table
