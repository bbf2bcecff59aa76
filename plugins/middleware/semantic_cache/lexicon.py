"""Word lists the correctness guards use: negations, numbers, time words, units, opposites, names.

They are hand-written and English-only. The lists of names (languages, places,
products) catch entities people type in lower case ("sort a list in python");
capitalized words and identifiers are caught without a list (see guards.py).
"""
from __future__ import annotations

__all__ = ["NEGATIONS", "NUMBER_WORDS", "TIME_WORDS", "UNITS", "OPPOSITES", "KNOWN_NAMES", "DIRECTION_WORDS", "STOPWORDS"]

NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor nowhere without cannot cant dont doesnt didnt isnt arent wasnt "
    "werent wont wouldnt shouldnt couldnt mustnt hasnt havent hadnt neednt unable impossible".split()
)

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6,
    "billion": 10**9, "trillion": 10**12, "dozen": 12, "half": 0.5, "quarter": 0.25, "twice": 2, "double": 2,
    "triple": 3, "single": 1, "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "once": 1, "couple": 2, "pair": 2,
}

TIME_WORDS = frozenset(
    "january february march april may june july august september october november december jan feb mar apr jun jul "
    "aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday "
    "tonight weekend morning afternoon evening night noon midnight daily weekly monthly yearly annually quarterly "
    "hourly second seconds minute minutes hour hours day days week weeks month months year years decade decades "
    "century centuries ago last next previous upcoming past future spring summer autumn fall winter christmas "
    "easter am pm utc gmt est pst cet".split()
)
# "second" and "may"/"march" are ambiguous; they count as time words only next to a number (see guards.py).
AMBIGUOUS_TIME = frozenset({"second", "may", "march", "fall", "past", "last", "next", "am", "sat", "sun"})

UNITS = {
    "km": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km", "mile": "mi",
    "miles": "mi", "mi": "mi", "meter": "m", "meters": "m", "metre": "m", "metres": "m", "feet": "ft", "foot": "ft",
    "ft": "ft", "inch": "in", "inches": "in", "cm": "cm", "centimeters": "cm", "mm": "mm", "kg": "kg",
    "kilogram": "kg", "kilograms": "kg", "kilos": "kg", "pound": "lb", "pounds": "lb", "lb": "lb", "lbs": "lb",
    "gram": "g", "grams": "g", "ounce": "oz", "ounces": "oz", "oz": "oz", "liter": "l", "liters": "l",
    "litre": "l", "litres": "l", "gallon": "gal", "gallons": "gal", "celsius": "c", "fahrenheit": "f",
    "kelvin": "k", "usd": "usd", "dollar": "usd", "dollars": "usd", "$": "usd", "eur": "eur", "euro": "eur",
    "euros": "eur", "€": "eur", "gbp": "gbp", "£": "gbp", "sterling": "gbp", "yen": "jpy", "jpy": "jpy",
    "rupee": "inr", "rupees": "inr", "inr": "inr", "percent": "%", "%": "%", "mb": "mb", "gb": "gb", "tb": "tb",
    "kb": "kb", "ms": "ms", "mph": "mph", "kmh": "kmh", "watts": "w", "volts": "v", "calories": "kcal",
}

# Pairs of words that flip an answer. Matched on lower-case whole words.
OPPOSITES = [tuple(p.split("/")) for p in (
    "increase/decrease increase/reduce raise/lower enable/disable enabled/disabled start/stop open/close add/remove "
    "buy/sell import/export encrypt/decrypt encode/decode upload/download login/logout install/uninstall "
    "before/after above/below maximum/minimum max/min best/worst cheapest/expensive cheap/expensive more/less "
    "higher/lower high/low faster/slower fast/slow largest/smallest biggest/smallest big/small large/small "
    "longest/shortest long/short hot/cold warm/cold true/false pros/cons advantages/disadvantages benefits/risks "
    "win/lose gain/lose accept/reject allow/deny allow/block include/exclude inside/outside internal/external "
    "input/output push/pull send/receive left/right north/south east/west up/down first/last oldest/newest "
    "old/new early/late earliest/latest safe/dangerous legal/illegal positive/negative men/women male/female "
    "boy/girl man/woman husband/wife father/mother son/daughter brother/sister rich/poor success/failure "
    "love/hate like/dislike agree/disagree join/leave hire/fire enter/exit attack/defend import/export "
    "lend/borrow asleep/awake beginner/advanced beginners/experts easy/hard easiest/hardest simple/complex "
    "client/server frontend/backend sync/async synchronous/asynchronous static/dynamic public/private "
    "uppercase/lowercase ascending/descending horizontal/vertical inner/outer union/intersection "
    "compress/decompress lock/unlock mount/unmount subscribe/unsubscribe cancel/renew cancel/keep "
    "delete/restore delete/create create/destroy freeze/unfreeze merge/split serialize/deserialize "
    "morning/evening day/night summer/winter spring/autumn weekday/weekend dog/cat cats/dogs tea/coffee "
    "read/write reading/writing vegetarian/vegan sweet/sour wet/dry cause/consequence causes/consequences "
    "causes/effects cause/effect time/space"
).split()]

DIRECTION_WORDS = frozenset({"to", "into", "from", "than", "vs", "versus", "->"})

# Names people type in lower case. Capitalized words and identifiers need no list.
KNOWN_NAMES = frozenset(
    # programming languages, runtimes, tools
    "python java javascript typescript ruby rust golang c++ c# csharp php perl kotlin swift scala haskell lua "
    "julia matlab sql mysql postgres postgresql sqlite mongodb redis kafka docker kubernetes k8s linux windows macos "
    "ubuntu debian fedora android ios iphone ipad mac react vue angular svelte django flask fastapi rails "
    "node nodejs npm pip conda numpy pandas pytorch tensorflow keras excel powerpoint git github gitlab aws "
    "azure gcp chrome firefox safari bash zsh powershell html css json yaml xml csv pdf jpeg png gif mp3 mp4 "
    "wifi bluetooth usb hdmi ethernet ipv4 ipv6 http https ssh ftp tcp udp dns vpn api graphql grpc "
    # companies and products
    "google apple microsoft amazon facebook meta netflix tesla twitter instagram whatsapp youtube tiktok uber "
    "airbnb spotify paypal visa mastercard samsung sony nintendo xbox playstation openai chatgpt gpt claude gemini "
    "bitcoin ethereum dogecoin nasdaq walmart ikea toyota honda bmw ford nike adidas starbucks mcdonalds "
    # places
    "usa uk america american england english britain british canada canadian mexico brazil argentina chile "
    "peru colombia france french germany german italy italian spain spanish portugal portuguese netherlands dutch "
    "belgium sweden norway denmark finland poland russia russian ukraine turkey greece egypt nigeria kenya "
    "ethiopia india indian pakistan bangladesh china chinese japan japanese korea korean vietnam thailand "
    "indonesia philippines malaysia singapore australia australian zealand israel iran iraq saudi dubai qatar "
    "europe european asia asian africa african antarctica london paris berlin madrid rome tokyo beijing shanghai "
    "delhi mumbai bangalore moscow sydney melbourne toronto vancouver chicago boston seattle york texas "
    "california florida hawaii alaska washington oregon nevada arizona colorado ohio georgia virginia "
    "hindi arabic latin mandarin cantonese "
    # science and misc
    "celsius fahrenheit kelvin mars venus jupiter saturn mercury earth moon sun pluto oxygen hydrogen carbon "
    "nitrogen helium iron gold silver copper covid diabetes cancer".split()
)

STOPWORDS = frozenset(
    "a an the is are was were be been being am do does did doing have has had having i me my we our you your he "
    "she it its they them their this that these those what which who whom whose when where why how of in on at "
    "by for with about as into through during to from up down out off again further then once here there all any "
    "both each few other some such only own same so too very can will just should would could may might must "
    "shall and or but if because until while please tell give me show explain know want need get way ways best "
    "good really s t".split()
)
