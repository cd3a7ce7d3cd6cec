"""SMPP v3.4 numeric constants: command ids, statuses, TLV tags and field values.

Every value here is taken from the SMPP v3.4 specification (issue 1.2, 12 Oct 1999); the
section number of each table is next to it.  Values the spec does not define are never
rejected by these enums' users: decoders keep unknown integers as plain ``int`` and
:func:`status_name` / :func:`command_name` / :func:`tag_name` give printable names for them.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "DEFAULT_INTERFACE_VERSION",
    "ESM_FEATURES_MASK",
    "ESM_MESSAGE_TYPE_MASK",
    "ESM_MESSAGING_MODE_MASK",
    "REGISTERED_DELIVERY_RECEIPT_MASK",
    "CommandId",
    "CommandStatus",
    "DataCoding",
    "DestFlag",
    "EsmClass",
    "MessageState",
    "Npi",
    "PriorityFlag",
    "RegisteredDelivery",
    "Tag",
    "Ton",
    "command_name",
    "esm_message_type",
    "esm_messaging_mode",
    "status_name",
    "tag_name",
]

#: interface_version we announce in bind PDUs (5.2.4: 0x34 = "SMPP v3.4").
DEFAULT_INTERFACE_VERSION = 0x34

#: The "response" bit of command_id (5.1.2.1): a response's id is the request's id | 0x80000000.
RESPONSE_BIT = 0x80000000


class CommandId(IntEnum):
    """command_id values (spec 5.1.2.1)."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class CommandStatus(IntEnum):
    """command_status error codes (spec 5.1.3)."""

    ESME_ROK = 0x00000000  # No Error
    ESME_RINVMSGLEN = 0x00000001  # Message Length is invalid
    ESME_RINVCMDLEN = 0x00000002  # Command Length is invalid
    ESME_RINVCMDID = 0x00000003  # Invalid Command ID
    ESME_RINVBNDSTS = 0x00000004  # Incorrect BIND Status for given command
    ESME_RALYBND = 0x00000005  # ESME Already in Bound State
    ESME_RINVPRTFLG = 0x00000006  # Invalid Priority Flag
    ESME_RINVREGDLVFLG = 0x00000007  # Invalid Registered Delivery Flag
    ESME_RSYSERR = 0x00000008  # System Error
    ESME_RINVSRCADR = 0x0000000A  # Invalid Source Address
    ESME_RINVDSTADR = 0x0000000B  # Invalid Dest Addr
    ESME_RINVMSGID = 0x0000000C  # Message ID is invalid
    ESME_RBINDFAIL = 0x0000000D  # Bind Failed
    ESME_RINVPASWD = 0x0000000E  # Invalid Password
    ESME_RINVSYSID = 0x0000000F  # Invalid System ID
    ESME_RCANCELFAIL = 0x00000011  # Cancel SM Failed
    ESME_RREPLACEFAIL = 0x00000013  # Replace SM Failed
    ESME_RMSGQFUL = 0x00000014  # Message Queue Full
    ESME_RINVSERTYP = 0x00000015  # Invalid Service Type
    ESME_RINVNUMDESTS = 0x00000033  # Invalid number of destinations
    ESME_RINVDLNAME = 0x00000034  # Invalid Distribution List name
    ESME_RINVDESTFLAG = 0x00000040  # Destination flag is invalid (submit_multi)
    ESME_RINVSUBREP = 0x00000042  # Invalid 'submit with replace' request
    ESME_RINVESMCLASS = 0x00000043  # Invalid esm_class field data
    ESME_RCNTSUBDL = 0x00000044  # Cannot Submit to Distribution List
    ESME_RSUBMITFAIL = 0x00000045  # submit_sm or submit_multi failed
    ESME_RINVSRCTON = 0x00000048  # Invalid Source address TON
    ESME_RINVSRCNPI = 0x00000049  # Invalid Source address NPI
    ESME_RINVDSTTON = 0x00000050  # Invalid Destination address TON
    ESME_RINVDSTNPI = 0x00000051  # Invalid Destination address NPI
    ESME_RINVSYSTYP = 0x00000053  # Invalid system_type field
    ESME_RINVREPFLAG = 0x00000054  # Invalid replace_if_present flag
    ESME_RINVNUMMSGS = 0x00000055  # Invalid number of messages
    ESME_RTHROTTLED = 0x00000058  # Throttling error (ESME has exceeded allowed message limits)
    ESME_RINVSCHED = 0x00000061  # Invalid Scheduled Delivery Time
    ESME_RINVEXPIRY = 0x00000062  # Invalid message validity period (Expiry time)
    ESME_RINVDFTMSGID = 0x00000063  # Predefined Message Invalid or Not Found
    ESME_RX_T_APPN = 0x00000064  # ESME Receiver Temporary App Error Code
    ESME_RX_P_APPN = 0x00000065  # ESME Receiver Permanent App Error Code
    ESME_RX_R_APPN = 0x00000066  # ESME Receiver Reject Message Error Code
    ESME_RQUERYFAIL = 0x00000067  # query_sm request failed
    ESME_RINVOPTPARSTREAM = 0x000000C0  # Error in the optional part of the PDU Body
    ESME_ROPTPARNOTALLWD = 0x000000C1  # Optional Parameter not allowed
    ESME_RINVPARLEN = 0x000000C2  # Invalid Parameter Length
    ESME_RMISSINGOPTPARAM = 0x000000C3  # Expected Optional Parameter missing
    ESME_RINVOPTPARAMVAL = 0x000000C4  # Invalid Optional Parameter Value
    ESME_RDELIVERYFAILURE = 0x000000FE  # Delivery Failure (used for data_sm_resp)
    ESME_RUNKNOWNERR = 0x000000FF  # Unknown Error


class Ton(IntEnum):
    """Type of Number (spec 5.2.5)."""

    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER_NUMBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6


class Npi(IntEnum):
    """Numbering Plan Indicator (spec 5.2.6)."""

    UNKNOWN = 0
    ISDN = 1  # E.163 / E.164
    DATA = 3  # X.121
    TELEX = 4  # F.69
    LAND_MOBILE = 6  # E.212
    NATIONAL = 8
    PRIVATE = 9
    ERMES = 10
    INTERNET = 14  # IP
    WAP_CLIENT_ID = 18


class DataCoding(IntEnum):
    """data_coding values (spec 5.2.19). Values not listed (e.g. GSM DCS classes 0xF0..) stay ints."""

    SMSC_DEFAULT = 0x00  # SMSC default alphabet (GSM 03.38 for most SMSCs)
    IA5 = 0x01  # IA5 (CCITT T.50) / ASCII
    OCTET_UNSPECIFIED_2 = 0x02  # 8-bit binary
    LATIN_1 = 0x03  # ISO-8859-1
    OCTET_UNSPECIFIED = 0x04  # 8-bit binary
    JIS = 0x05  # X 0208-1990
    CYRILLIC = 0x06  # ISO-8859-5
    LATIN_HEBREW = 0x07  # ISO-8859-8
    UCS2 = 0x08  # ISO/IEC-10646 (UCS-2, big endian)
    PICTOGRAM = 0x09
    ISO_2022_JP = 0x0A  # music codes
    EXTENDED_KANJI_JIS = 0x0D  # X 0212-1990
    KS_C_5601 = 0x0E


class MessageState(IntEnum):
    """message_state values (spec 5.2.28)."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


class PriorityFlag(IntEnum):
    """priority_flag values (spec 5.2.14); meaning depends on the network (GSM: 0 vs >0)."""

    LEVEL_0 = 0
    LEVEL_1 = 1
    LEVEL_2 = 2
    LEVEL_3 = 3


class DestFlag(IntEnum):
    """dest_flag of a submit_multi destination (spec 5.2.25)."""

    SME_ADDRESS = 1
    DISTRIBUTION_LIST = 2


#: esm_class bit masks (spec 5.2.12): bits 1-0 messaging mode, bits 5-2 message type,
#: bits 7-6 GSM network specific features.
ESM_MESSAGING_MODE_MASK = 0x03
ESM_MESSAGE_TYPE_MASK = 0x3C
ESM_FEATURES_MASK = 0xC0


class EsmClass(IntFlag):
    """esm_class bits (spec 5.2.12).

    Messaging mode (bits 1-0) and message type (bits 5-2) are small enumerations packed into
    the byte, so compare them after masking (:func:`esm_messaging_mode`,
    :func:`esm_message_type`); UDHI and REPLY_PATH are real independent flags.
    """

    DEFAULT = 0x00
    # messaging mode (bits 1-0), ESME -> SMSC
    DATAGRAM_MODE = 0x01
    FORWARD_MODE = 0x02  # "transaction mode"
    STORE_AND_FORWARD_MODE = 0x03
    # message type (bits 5-2)
    DELIVERY_RECEIPT = 0x04  # SMSC delivery receipt (SMSC -> ESME)
    DELIVERY_ACK = 0x08  # SME delivery acknowledgement
    MANUAL_ACK = 0x10  # SME manual/user acknowledgement
    CONVERSATION_ABORT = 0x18  # Korean CDMA
    INTERMEDIATE_NOTIFICATION = 0x20
    # GSM network specific features (bits 7-6)
    UDHI = 0x40  # user data header indicator
    REPLY_PATH = 0x80


def esm_messaging_mode(esm_class: int) -> int:
    """The messaging mode bits (0 default, 1 datagram, 2 forward, 3 store and forward)."""
    return esm_class & ESM_MESSAGING_MODE_MASK


def esm_message_type(esm_class: int) -> int:
    """The message type bits, e.g. ``EsmClass.DELIVERY_RECEIPT`` (0x04) for a receipt."""
    return esm_class & ESM_MESSAGE_TYPE_MASK


#: registered_delivery mask of the SMSC delivery receipt bits (spec 5.2.17, bits 1-0).
REGISTERED_DELIVERY_RECEIPT_MASK = 0x03


class RegisteredDelivery(IntFlag):
    """registered_delivery bits (spec 5.2.17)."""

    NONE = 0x00
    # SMSC delivery receipt (bits 1-0)
    RECEIPT_ON_SUCCESS_OR_FAILURE = 0x01
    RECEIPT_ON_FAILURE = 0x02
    # SME originated acknowledgement (bits 3-2)
    SME_DELIVERY_ACK = 0x04
    SME_MANUAL_ACK = 0x08
    # intermediate notification (bit 4)
    INTERMEDIATE_NOTIFICATION = 0x10


class Tag(IntEnum):
    """Optional parameter (TLV) tags (spec 5.3.2)."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


#: Vendor specific TLV tag range (spec 5.3.2 table: 0x1400 - 0x3FFF "reserved for SMSC vendor").
VENDOR_TAG_MIN = 0x1400
VENDOR_TAG_MAX = 0x3FFF

_STATUS_BY_VALUE: dict[int, CommandStatus] = {s.value: s for s in CommandStatus}
_COMMAND_BY_VALUE: dict[int, CommandId] = {c.value: c for c in CommandId}
_TAG_BY_VALUE: dict[int, Tag] = {t.value: t for t in Tag}


def status_name(value: int) -> str:
    """Name of a command_status, e.g. ``"ESME_RINVCMDLEN"``; unknown codes as ``"0x00000401"``.

    Codes 0x400-0x4FF are "reserved for SMSC vendor specific errors" (5.1.3); they are kept
    as ints by the decoder and named here by their hex value.
    """
    known = _STATUS_BY_VALUE.get(value)
    return known.name if known is not None else f"0x{value:08X}"


def command_name(value: int) -> str:
    """Lower-case spec name of a command_id (``"submit_sm"``), or its hex value if unknown."""
    known = _COMMAND_BY_VALUE.get(value)
    return known.name.lower() if known is not None else f"0x{value:08X}"


def tag_name(value: int) -> str:
    """Lower-case spec name of a TLV tag (``"message_payload"``), or ``"0x1401"`` if unknown."""
    if not isinstance(value, int):  # error messages about a malformed TLV must not fail too
        return repr(value)
    known = _TAG_BY_VALUE.get(value)
    return known.name.lower() if known is not None else f"0x{value:04X}"
